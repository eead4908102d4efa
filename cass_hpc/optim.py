"""Optimisers and learning-rate schedules by name, shared by pretraining and fine-tuning."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

OPTIMIZERS = ("adam", "adamw", "sgd")


def build_optimizer(
    name: str,
    params: Iterable[nn.Parameter],
    lr: float,
    weight_decay: float = 0.0,
    *,
    fused: bool = False,
) -> torch.optim.Optimizer:
    """``adam`` (CASS paper), ``adamw`` (DINO paper) or ``sgd`` (momentum 0.9; App. B ablation).
    ``fused``: Adam/AdamW's fused kernel (the same update in one launch; ``speed.py``)."""
    params = [p for p in params if p.requires_grad]
    kernel = {"fused": True} if fused else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **kernel)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kernel)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose from {OPTIMIZERS}")


def cosine_factor(
    base_lr: float, eta_min: float, t_max: int, warmup: int = 0
) -> Callable[[int], float]:
    """Multiplier for ``LambdaLR``: linear warm-up over ``warmup`` steps, then cosine annealing
    from ``base_lr`` to ``eta_min`` with period ``t_max`` (the closed form of
    ``CosineAnnealingLR``, which rises again after ``t_max`` — the paper's T_max 16 cycles)."""
    if t_max < 1 or warmup < 0 or base_lr <= 0:
        raise ValueError(f"need t_max >= 1, warmup >= 0, lr > 0; got {t_max}, {warmup}, {base_lr}")
    floor = eta_min / base_lr

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        return floor + (1 - floor) * (1 + math.cos(math.pi * (t - warmup) / t_max)) / 2

    return factor


def scaled_step(
    loss: torch.Tensor,
    optimizers: Mapping[str, torch.optim.Optimizer],
    nets: Mapping[str, nn.Module],
    scaler: torch.amp.GradScaler,
    clip_grad: float | None = None,
    before_step: Callable[[], None] | None = None,
) -> bool:
    """One fp16 optimisation step of several nets, each with its own optimiser, under ONE
    gradient scaler (torch.amp's recipe for multiple optimisers): scale the loss once, unscale
    each optimiser once, clip each net (true gradients), step each, update the scale once.
    An overflow in any net skips every net's step (the nets stay in step with each other) and
    halves the scale once. Returns whether the nets stepped.

    Accelerate's ``AcceleratedOptimizer.step`` calls ``scaler.update()`` inside each optimiser's
    step: with two optimisers the scale moved twice per step and the second net's gradients were
    unscaled with a factor already changed by the first (issue 15)."""
    scaler.scale(loss).backward()
    for arm, optimizer in optimizers.items():
        scaler.unscale_(optimizer)
        if clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(nets[arm].parameters(), clip_grad)
    grads = [
        p.grad
        for optimizer in optimizers.values()
        for group in optimizer.param_groups
        for p in group["params"]
        if p.grad is not None
    ]
    # one wait for the device, not one per parameter
    finite = bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()) if grads else True
    if finite:
        if before_step is not None:
            before_step()
        for optimizer in optimizers.values():
            scaler.step(optimizer)
    scaler.update()  # halves the scale after an overflow, grows it after enough good steps
    return finite
