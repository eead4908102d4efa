"""One optimisation step of the pretraining loop, shared by the loop and the speed bench.

``prepare_step`` builds each net's optimiser and LR schedule with the speed switches applied
(``speed.py``) and prepares them with Accelerate; ``optimisation_step`` runs one step of every
net on one batch (fp16: one scaler step for all nets, ``optim.scaled_step``); ``RunningSums``
keeps an epoch's loss and spreads on the device until read. ``python -m cass_hpc.bench`` times
exactly these, so it measures what ``pretrain.pretrain`` runs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from cass_hpc.collapse import spread_tensor
from cass_hpc.methods.base import PretrainMethod, Progress, StepOutput, Views
from cass_hpc.optim import build_optimizer, cosine_factor, scaled_step
from cass_hpc.speed import StepSpeed, apply_speed

if TYPE_CHECKING:
    from cass_hpc.pretrain import PretrainConfig

log = logging.getLogger(__name__)


def _to(views: Views, device: torch.device) -> Views:
    if isinstance(views, list):
        return [v.to(device, non_blocking=True) for v in views]
    return views.to(device, non_blocking=True)


def prepare_step(
    method: PretrainMethod, cfg: PretrainConfig, accelerator: Accelerator, speed: StepSpeed
) -> tuple[PretrainMethod, dict[str, nn.Module], dict[str, torch.optim.Optimizer],
           dict[str, LambdaLR]]:  # fmt: skip
    """The nets, optimisers and LR schedules of the loop, speed switches applied (``speed.py``),
    on the accelerator's device: ``(prepared method, arms, optimisers, schedulers)``. The bench
    builds its steps here too, so that it times what the loop runs."""
    converted = apply_speed(method, speed)
    if converted:
        log.info("channels_last: %s", ", ".join(converted))
    arms = dict(method.arms.items())
    fused = speed.fused_optimizer  # Adam/AdamW only; CUDA and CPU have the kernel
    optimizers = {
        a: build_optimizer(cfg.arm_optimizers.get(a, cfg.optimizer), net.parameters(), cfg.lr,
                           cfg.weight_decay, fused=fused)
        for a, net in arms.items()
    }  # fmt: skip
    factor = cosine_factor(cfg.lr, cfg.eta_min, cfg.t_max or cfg.epochs, cfg.warmup_epochs)
    schedulers = {a: LambdaLR(o, factor) for a, o in optimizers.items()}
    method = accelerator.prepare_model(method)
    optimizers = {a: accelerator.prepare_optimizer(o) for a, o in optimizers.items()}
    return method, arms, optimizers, schedulers


class RunningSums:
    """An epoch's loss and per-arm spread summed on the device, read to the host only when
    asked: no wait for the GPU per step. Float64, so the sums equal the host's float sums."""

    def __init__(self, device: torch.device, total: float = 0.0,
                 spreads: dict[str, float] | None = None) -> None:  # fmt: skip
        self.device = device
        self.total = torch.tensor(total, dtype=torch.float64, device=device)
        self.spreads = {
            a: torch.tensor(v, dtype=torch.float64, device=device)
            for a, v in (spreads or {}).items()
        }

    def add(self, out: StepOutput) -> None:
        """Add one step's loss and the spread of each arm's embeddings (0 for a batch of 1)."""
        self.total += out.loss.detach().double()
        for a, emb in out.embeddings.items():
            value = spread_tensor(emb).double() if emb.shape[0] > 1 else 0.0
            if a not in self.spreads:
                self.spreads[a] = torch.zeros((), dtype=torch.float64, device=self.device)
            self.spreads[a] += value

    def read(self) -> tuple[float, dict[str, float]]:
        """The sums as host floats (waits for the device)."""
        values = torch.stack([self.total, *self.spreads.values()]).tolist()
        return values[0], dict(zip(self.spreads, values[1:], strict=True))


def optimisation_step(
    method: PretrainMethod,
    views: Views,
    progress: Progress,
    optimizers: dict[str, torch.optim.Optimizer],
    arms: dict[str, nn.Module],
    cfg: PretrainConfig,
    accelerator: Accelerator,
) -> StepOutput:
    """One optimisation step of every net on one batch of views."""
    views = _to(views, accelerator.device)
    if not cfg.paper_compat:  # the notebooks never zeroed gradients
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
    with accelerator.autocast():
        out = method.training_step(views, progress)
    if not torch.isfinite(out.loss):
        return out  # the caller reports it, before any weight changes
    if accelerator.scaler is not None:  # fp16: one scaler step for all the nets (optim.py)
        inner = {a: getattr(o, "optimizer", o) for a, o in optimizers.items()}
        scaled_step(out.loss, inner, arms, accelerator.scaler, cfg.clip_grad,
                    lambda: method.before_optimizer_step(progress))  # fmt: skip
        method.after_optimizer_step(progress)
        return out
    accelerator.backward(out.loss)
    method.before_optimizer_step(progress)
    for a, opt in optimizers.items():
        if cfg.clip_grad is not None:
            accelerator.clip_grad_norm_(arms[a].parameters(), cfg.clip_grad)
        opt.step()
    method.after_optimizer_step(progress)
    return out
