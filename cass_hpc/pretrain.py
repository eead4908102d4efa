"""The one pretraining loop: any `PretrainMethod`, Accelerate + AMP, SWA, checkpoints, timing.

CASS §3.1 / App. F.2: Adam lr 1e-3 per net, cosine annealing (T_max 16, eta_min 1e-6, stepped per
epoch), stochastic weight averaging (`torch.optim.swa_utils`: the averaged weights, with BN
statistics recomputed, are what fine-tuning starts from), batch 16, 100 epochs. The loop knows
nothing about the method beyond `training_step` and its per-arm nets.
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

from cass_hpc import store
from cass_hpc.methods.base import PretrainMethod
from cass_hpc.methods.cass import spread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    """Mirrors ``conf/method/<name>.yaml: pretrain``."""

    epochs: int = 100  # paper: 100
    batch_size: int = 16  # paper: 16
    lr: float = 1e-3  # Adam, each net
    t_max: int = 16  # cosine annealing period, epochs
    eta_min: float = 1e-6  # cosine floor
    swa: bool = True  # average weights from swa_start on (paper: SWA around Adam)
    swa_start: float = 0.75  # fraction of epochs after which each epoch's weights are averaged
    num_workers: int = 0  # DataLoader workers (0 was as fast as 2 on 2 cores; PERF-NOTES)


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
) -> PretrainResult:
    """Run (or resume) pretraining in ``out_dir``; write ``<arm>.pt`` per arm and return timings.

    A checkpoint is written atomically after every epoch; if ``out_dir/checkpoint.pt`` exists the
    run resumes after its epoch.
    """
    if cfg.epochs < 1:
        raise ValueError(f"pretrain.epochs must be >= 1, got {cfg.epochs}")
    arms = dict(method.arms.items())
    optimizers = {a: torch.optim.Adam(net.parameters(), lr=cfg.lr) for a, net in arms.items()}
    schedulers = {
        a: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=cfg.t_max, eta_min=cfg.eta_min)
        for a, o in optimizers.items()
    }
    method = accelerator.prepare_model(method)
    optimizers = {a: accelerator.prepare_optimizer(o) for a, o in optimizers.items()}
    device = accelerator.device
    averaged = {a: AveragedModel(net) for a, net in arms.items()} if cfg.swa else {}
    swa_first_epoch = min(cfg.epochs, max(1, math.floor(cfg.swa_start * cfg.epochs) + 1))
    result = PretrainResult(
        method=method.name,
        epochs=cfg.epochs,
        wall_s=0.0,
        images_per_s=0.0,
        peak_mem_mb=0.0,
        precision=accelerator.mixed_precision,
        device=str(device),
    )
    ckpt_path = out_dir / "checkpoint.pt"
    start_epoch = 1
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        method.load_state_dict(state["method"])
        for a in arms:
            optimizers[a].load_state_dict(state["optimizers"][a])
            schedulers[a].load_state_dict(state["schedulers"][a])
            if a in averaged:
                averaged[a].load_state_dict(state["averaged"][a])
        result = PretrainResult(**state["result"])
        torch.set_rng_state(state["rng"])
        start_epoch = state["epoch"] + 1
        log.info("resuming pretraining from %s after epoch %d", ckpt_path, state["epoch"])

    for epoch in range(start_epoch, cfg.epochs + 1):
        method.train()
        t0 = time.perf_counter()
        total, steps, spreads = 0.0, 0, {a: 0.0 for a in arms}
        for step, (images, _labels) in enumerate(loader, start=1):
            images = images.to(device, non_blocking=True)
            for opt in optimizers.values():
                opt.zero_grad(set_to_none=True)
            with accelerator.autocast():
                out = method.training_step(images)
            if not torch.isfinite(out.loss):
                value = float(out.loss.detach())
                raise NonFiniteLossError(
                    f"pretraining loss is {value} at epoch {epoch}, step {step}; "
                    f"last good checkpoint: {ckpt_path if ckpt_path.exists() else 'none yet'}"
                )
            accelerator.backward(out.loss)
            for opt in optimizers.values():
                opt.step()
            total += float(out.loss.detach())
            steps += 1
            result.images += images.shape[0]
            for a, emb in out.embeddings.items():
                spreads[a] += spread(emb) if emb.shape[0] > 1 else 0.0
        for sched in schedulers.values():
            sched.step()
        if epoch >= swa_first_epoch:
            for a, avg in averaged.items():
                avg.update_parameters(arms[a])
        epoch_s = time.perf_counter() - t0
        result.epoch_s.append(epoch_s)
        result.wall_s += epoch_s
        result.loss.append(total / max(steps, 1))
        for a in arms:
            result.spread.setdefault(a, []).append(spreads[a] / max(steps, 1))
        log.info(
            "pretrain %s epoch %d/%d loss %.4f spread %s lr %.2e %.1fs",
            method.name,
            epoch,
            cfg.epochs,
            result.loss[-1],
            " ".join(f"{a}={result.spread[a][-1]:.3f}" for a in arms),
            schedulers[next(iter(arms))].get_last_lr()[0],
            epoch_s,
        )
        store.torch_save(
            ckpt_path,
            {
                "epoch": epoch,
                "method": accelerator.unwrap_model(method).state_dict(),
                "optimizers": {a: o.state_dict() for a, o in optimizers.items()},
                "schedulers": {a: s.state_dict() for a, s in schedulers.items()},
                "averaged": {a: m.state_dict() for a, m in averaged.items()},
                "result": asdict(result),
                "rng": torch.get_rng_state(),
            },
        )

    result.images_per_s = result.images / result.wall_s if result.wall_s else 0.0
    result.peak_mem_mb = peak_memory_mb(device)
    for a, net in arms.items():
        final: nn.Module = net
        if a in averaged:
            update_bn(loader, averaged[a], device=device)  # BN statistics of the averaged weights
            final = averaged[a].module
        store.torch_save(out_dir / f"{a}.pt", final.net.state_dict())
    store.write_json(out_dir / "pretrain.json", asdict(result))
    return result
