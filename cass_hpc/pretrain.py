"""The one pretraining loop: any `PretrainMethod`, Accelerate + AMP, SWA, checkpoints, timing.

Defaults are CASS §3.1 / App. F.2: Adam lr 1e-3 per net, cosine annealing (T_max 16, eta_min 1e-6,
stepped per epoch), stochastic weight averaging (`torch.optim.swa_utils`: the averaged weights,
with BN statistics recomputed, are what fine-tuning starts from), batch 16, 100 epochs. DINO's
settings (AdamW, warm-up, gradient clipping) are the same keys with other values. The loop knows
nothing about a method beyond its protocol (`methods/base.py`).
"""

from __future__ import annotations

import logging
import math
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn
from torch.utils.data import DataLoader

from cass_hpc import preempt, store
from cass_hpc.collapse import ACTIONS as COLLAPSE_ACTIONS
from cass_hpc.collapse import CollapseMonitor
from cass_hpc.data.loader import set_position
from cass_hpc.knn import KEEP, KnnMonitor
from cass_hpc.methods.base import PretrainMethod, Progress
from cass_hpc.optim import OPTIMIZERS
from cass_hpc.speed import StepSpeed
from cass_hpc.stage import ResumableStage
from cass_hpc.step import RunningSums, optimisation_step, prepare_step

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    """Mirrors ``conf/pretrain/*.yaml``."""

    epochs: int = 100  # paper: 100
    batch_size: int = 16  # paper: 16
    lr: float = 1e-3  # base learning rate, every net
    optimizer: str = "adam"  # adam (CASS) | adamw (DINO) | sgd
    arm_optimizers: dict[str, str] = field(default_factory=dict)  # per-arm override, {cnn: sgd}
    weight_decay: float = 0.0
    t_max: int | None = 16  # cosine period in epochs (paper: 16); None = the whole run
    eta_min: float = 1e-6  # cosine floor
    warmup_epochs: int = 0  # linear warm-up before the cosine (DINO: 10)
    clip_grad: float | None = None  # max gradient norm per net (DINO: 3.0); None = no clipping
    swa: bool = True  # average weights from swa_start on (paper: SWA around Adam)
    swa_start: float = 0.75  # fraction of epochs after which each epoch's weights are averaged
    num_workers: int = 0  # DataLoader workers (0 was as fast as 2 on 2 cores; PERF-NOTES)
    collapse_threshold: float = 0.1  # spread below this counts as collapsed
    collapse_epochs: int = 2  # consecutive collapsed epochs before collapse_action
    collapse_action: str = "warn"  # warn (record + loud log) | stop (fail the job)
    keep_checkpoint: bool = False  # keep checkpoint.pt once done (it holds optimiser state: GBs)
    knn_every: int = 1  # k-NN health monitor: epoch 0, every N epochs, the last; 0 = off
    knn_k: int = 20  # neighbours of the monitor's k-NN classifier (DINO: 20)
    keep: str = "last"  # last (paper: the last epoch's, SWA-averaged, weights) | best_knn (ours)
    # The released notebooks' behaviour: no zero_grad (gradients accumulate), SWA never applied,
    # cosine stepped per batch (LR cycles every 2·t_max steps). For comparison only.
    paper_compat: bool = False

    def __post_init__(self) -> None:  # checked when a grid is planned, before anything runs
        at_least = {"epochs": 1, "batch_size": 2, "warmup_epochs": 0, "num_workers": 0,
                    "collapse_epochs": 1, "t_max": 1}  # fmt: skip
        for name, low in at_least.items():
            value = getattr(self, name)
            if value is not None and value < low:  # batch 2: BatchNorm trains on a batch
                raise ValueError(f"pretrain.{name} must be >= {low}, got {value}")
        if self.lr < 0 or self.weight_decay < 0:
            raise ValueError(
                f"pretrain.lr and pretrain.weight_decay must be >= 0, got {self.lr}, "
                f"{self.weight_decay}"
            )
        if not 0 <= self.swa_start < 1:
            raise ValueError(f"pretrain.swa_start must be in [0, 1), got {self.swa_start}")
        for name in ("eta_min", "collapse_threshold"):
            if (value := getattr(self, name)) < 0:
                raise ValueError(f"pretrain.{name} must be >= 0, got {value}")
        for name, value in [
            ("optimizer", self.optimizer),
            *((f"arm_optimizers.{arm}", o) for arm, o in self.arm_optimizers.items()),
        ]:
            if value not in OPTIMIZERS:
                raise ValueError(f"pretrain.{name} must be one of {OPTIMIZERS}, got {value!r}")
        if self.collapse_action not in COLLAPSE_ACTIONS:
            raise ValueError(
                f"pretrain.collapse_action must be one of {COLLAPSE_ACTIONS}, "
                f"got {self.collapse_action!r}"
            )
        if self.keep not in KEEP:
            raise ValueError(f"pretrain.keep must be one of {KEEP}, got {self.keep!r}")
        if self.knn_every < 0:
            raise ValueError(f"pretrain.knn_every must be >= 0 (0 = off), got {self.knn_every}")
        if self.knn_k < 1:
            raise ValueError(f"pretrain.knn_k must be >= 1, got {self.knn_k}")
        if self.keep == "best_knn" and not self.knn_every:
            raise ValueError("pretrain.keep=best_knn needs the k-NN monitor (knn_every >= 1)")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/Inf; the last good checkpoint is left intact."""


@dataclass
class PretrainResult:
    """What the pretraining stage records (``pretrain.json``; copied into results.json)."""

    method: str
    epochs: int
    wall_s: float  # compute time of all epochs, summed over resumed runs
    images_per_s: float
    peak_mem_mb: float
    precision: str
    device: str
    images: int = 0  # images processed, summed over resumed runs
    loss: list[float] = field(default_factory=list)  # per-epoch mean
    spread: dict[str, list[float]] = field(default_factory=dict)  # per-arm, per-epoch mean
    epoch_s: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)  # learning rate after each epoch's schedule steps
    collapse_warnings: list[str] = field(default_factory=list)
    collapsed: dict[str, str] = field(default_factory=dict)  # arm -> its collapse warning
    # the k-NN health monitor (knn.py): validation-split balanced accuracy per arm
    knn_epochs: list[int] = field(default_factory=list)  # epochs scored; 0 = the starting weights
    knn: dict[str, list[float]] = field(default_factory=dict)  # per arm, one per knn_epochs
    knn_chance: float | None = None  # the score of a net that learned nothing (1 / classes)
    knn_final: dict[str, float] = field(default_factory=dict)  # the weights handed to fine-tuning
    kept: dict[str, str] = field(default_factory=dict)  # per arm: "last" or "epoch N" (best_knn)
    knn_s: float = 0.0  # seconds spent scoring the monitor (not in wall_s)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def pretrain(
    method: PretrainMethod,
    loader: DataLoader,
    cfg: PretrainConfig,
    out_dir: Path,
    accelerator: Accelerator,
    knn: KnnMonitor | None = None,
    speed: StepSpeed | None = None,
) -> PretrainResult:
    """Run (or resume) pretraining in ``out_dir``; write ``<arm>.pt`` per trained net and
    ``pretrain.json``, and return the record.

    ``knn`` (the validation split): before the first step of a fresh run (epoch 0: the starting
    weights, recorded as the yardstick) and every ``cfg.knn_every`` epochs each net is scored by
    the k-NN health monitor; with ``cfg.keep="best_knn"`` each net hands to fine-tuning the
    weights that scored best (an epoch's from 1 on, or the final averaged ones), else the final
    ones (paper).

    A checkpoint is written atomically after every epoch, and at the next step boundary when
    SLURM sends SIGUSR2 (time limit, preemption; see ``preempt``); if ``out_dir/checkpoint.pt``
    exists the run resumes where it was saved, mid-epoch included, onto the same trajectory (with
    a loader from ``cass_hpc.data.loader.make_loader``).

    ``speed``: the step's speed switches (``speed.py``); None = ``StepSpeed.auto`` for the device.
    """
    if cfg.keep == "best_knn" and knn is None:
        raise ValueError("pretrain.keep=best_knn needs the k-NN monitor (pretrain.knn_every >= 1)")
    knn = knn if cfg.knn_every else None
    if cfg.swa and any(
        net is not method.arms[a] if a in method.arms else True
        for a, net in method.trained_arms().items()
    ):
        raise ValueError(
            f"pretrain.swa=true needs a method whose optimised nets are the ones it "
            f"hands to fine-tuning; {method.name} hands over others (set swa=false)"
        )
    speed = speed or StepSpeed.auto(accelerator.device)
    method, arms, optimizers, schedulers = prepare_step(method, cfg, accelerator, speed)
    device = accelerator.device
    averaged = {a: AveragedModel(net) for a, net in arms.items()} if cfg.swa else {}
    swa_first_epoch = min(cfg.epochs, max(1, math.floor(cfg.swa_start * cfg.epochs) + 1))
    monitor = CollapseMonitor(cfg.collapse_threshold, cfg.collapse_epochs, cfg.collapse_action)
    result = PretrainResult(
        method=method.name, epochs=cfg.epochs, wall_s=0.0, images_per_s=0.0, peak_mem_mb=0.0,
        precision=accelerator.mixed_precision, device=str(device),
    )  # fmt: skip
    if knn is not None:
        result.knn_chance = knn.chance
    best: dict[str, dict] = {}  # keep=best_knn: per arm, {"epoch", "score", "state"}
    ckpt_path = out_dir / "checkpoint.pt"
    stage = ResumableStage(ckpt_path, loader.generator, "pretraining")
    if (state := stage.load()) is not None:
        method.load_state_dict(state["method"])
        for a in arms:
            optimizers[a].load_state_dict(state["optimizers"][a])
            schedulers[a].load_state_dict(state["schedulers"][a])
            if a in averaged:
                averaged[a].load_state_dict(state["averaged"][a])
        result = PretrainResult(**state["result"])
        monitor.below, monitor.collapsed = state["collapse_below"], dict(result.collapsed)
        if accelerator.scaler is not None and state.get("scaler"):
            accelerator.scaler.load_state_dict(state["scaler"])
        best = state.get("best", {})

    def payload() -> dict:
        """The whole run state but the step (``ResumableStage.save`` adds epoch, sums, RNG)."""
        return {
            "method": accelerator.unwrap_model(method).state_dict(),
            "optimizers": {a: o.state_dict() for a, o in optimizers.items()},
            "schedulers": {a: s.state_dict() for a, s in schedulers.items()},
            "averaged": {a: m.state_dict() for a, m in averaged.items()},
            "result": asdict(result),
            "collapse_below": monitor.below,
            "scaler": accelerator.scaler.state_dict() if accelerator.scaler else None,
            "best": best,
        }

    steps_per_epoch = len(loader)
    with preempt.guard():
        if knn is not None and state is None:  # a resumed run's record already holds epoch 0
            # epoch 0, the starting weights: the yardstick pretraining must beat. Recorded only,
            # never a best_knn candidate, so the shipped recipes hand over what they did before.
            _score_epoch(knn, method, 0, result, best, cfg, accelerator, candidate=False)
        for epoch in range(stage.start_epoch, cfg.epochs + 1):
            method.train()
            start_step = stage.epoch_steps_start()
            resumable = set_position(loader, epoch, start_step)
            sums = stage.sums({"step": 0, "total": 0.0, "spreads": {}, "seconds": 0.0})
            t0 = time.perf_counter() - sums["seconds"]
            steps, running = sums["step"], RunningSums(device, sums["total"], sums["spreads"])
            for step, (views, _labels) in enumerate(loader, start=start_step + 1):
                progress = Progress(epoch, step, steps_per_epoch, cfg.epochs)
                out = optimisation_step(method, views, progress, optimizers, arms, cfg, accelerator)
                if not torch.isfinite(out.loss):
                    value = float(out.loss.detach())
                    raise NonFiniteLossError(
                        f"pretraining loss is {value} at epoch {epoch}, step {step}; "
                        f"last good checkpoint: {ckpt_path if ckpt_path.exists() else 'none yet'}"
                    )
                if cfg.paper_compat:  # per-batch cosine: the LR cycles every 2·t_max steps
                    for sched in schedulers.values():
                        sched.step()
                running.add(out)
                steps += 1
                first = views[0] if isinstance(views, list) else views
                result.images += first.shape[0]
                if speed.read_every and steps % speed.read_every == 0:  # waits for the device
                    log.debug("pretrain step %d: loss sum %.4f", step, running.read()[0])
                if preempt.requested():  # else after_step does nothing: no host read needed
                    total, spreads = running.read()
                    stage.after_step(epoch, step, loader, resumable, payload, {
                        "total": total, "spreads": spreads, "seconds": time.perf_counter() - t0,
                    })  # fmt: skip
            total, spreads = running.read()
            if not cfg.paper_compat:
                for sched in schedulers.values():
                    sched.step()
            if epoch >= swa_first_epoch:
                for a, avg in averaged.items():
                    avg.update_parameters(arms[a])
            epoch_s = time.perf_counter() - t0
            result.epoch_s.append(epoch_s)
            result.wall_s += epoch_s
            result.loss.append(total / max(steps, 1))
            result.lr.append(schedulers[next(iter(arms))].get_last_lr()[0])
            epoch_spread = {a: v / max(steps, 1) for a, v in spreads.items()}
            for a, v in epoch_spread.items():
                result.spread.setdefault(a, []).append(v)
            log.info(
                "pretrain %s epoch %d/%d loss %.4f spread %s lr %.2e %.1fs",
                method.name, epoch, cfg.epochs, result.loss[-1],
                " ".join(f"{a}={v:.3f}" for a, v in epoch_spread.items()),
                result.lr[-1], epoch_s,
            )  # fmt: skip
            monitor.update(epoch, epoch_spread)  # may raise CollapseError (collapse_action=stop)
            result.collapsed, result.collapse_warnings = dict(monitor.collapsed), monitor.warnings
            if knn is not None and (epoch % cfg.knn_every == 0 or epoch == cfg.epochs):
                _score_epoch(knn, method, epoch, result, best, cfg, accelerator)
            stage.after_epoch(epoch, payload())

    result.images_per_s = result.images / result.wall_s if result.wall_s else 0.0
    result.peak_mem_mb = peak_memory_mb(device)
    set_position(loader, cfg.epochs)  # update_bn sees the last epoch's batches, resumed or not
    finals: dict[str, nn.Module] = {}
    for a, net in method.trained_arms().items():
        finals[a] = net
        if a in averaged and not cfg.paper_compat:  # the notebooks' SWA was never applied
            # BN statistics of the averaged weights
            update_bn(_first_views(loader), averaged[a], device=device)
            finals[a] = averaged[a].module
    if knn is not None:
        t0 = time.perf_counter()
        result.knn_final = knn.score(finals, accelerator)  # what fine-tuning gets, unless ...
        result.knn_s += time.perf_counter() - t0
    for a, final in finals.items():
        weights, result.kept[a] = final.net.state_dict(), "last"
        if a in best and best[a]["score"] > result.knn_final[a]:  # ... an epoch scored better
            weights, result.knn_final[a] = best[a]["state"], best[a]["score"]
            result.kept[a] = f"epoch {best[a]['epoch']}"
            log.info("pretrain %s: %s keeps epoch %d (k-NN %.3f)", method.name, a,
                     best[a]["epoch"], best[a]["score"])  # fmt: skip
        store.torch_save(out_dir / f"{a}.pt", weights)
    store.write_json(out_dir / "pretrain.json", asdict(result))
    if not cfg.keep_checkpoint:
        ckpt_path.unlink(missing_ok=True)  # pretrain.json marks it done; the weights are saved
    return result


def _first_views(loader: DataLoader):  # type: ignore[no-untyped-def]
    """The loader's images, one view per image (a two-view method's first crops)."""
    for views, _labels in loader:
        yield views[0] if isinstance(views, list) else views


def _score_epoch(
    knn: KnnMonitor,
    method: PretrainMethod,
    epoch: int,
    result: PretrainResult,
    best: dict[str, dict],
    cfg: PretrainConfig,
    accelerator: Accelerator,
    candidate: bool = True,
) -> None:
    """Score the k-NN monitor on each trained net; keep=best_knn: remember the best weights
    (``candidate=False``: only record the score, as for epoch 0)."""
    t0 = time.perf_counter()
    nets = accelerator.unwrap_model(method).trained_arms()
    scores = knn.score(nets, accelerator)
    result.knn_s += time.perf_counter() - t0
    result.knn_epochs.append(epoch)
    for a, value in scores.items():
        result.knn.setdefault(a, []).append(value)
        if candidate and cfg.keep == "best_knn" and value > best.get(a, {}).get("score", -1.0):
            state = {k: v.detach().cpu().clone() for k, v in nets[a].net.state_dict().items()}
            best[a] = {"epoch": epoch, "score": value, "state": state}
    log.info(
        "pretrain %s epoch %d k-NN %s (chance %.3f, %.1fs)", method.name, epoch,
        " ".join(f"{a}={v:.3f}" for a, v in scores.items()), knn.chance,
        time.perf_counter() - t0,
    )  # fmt: skip
