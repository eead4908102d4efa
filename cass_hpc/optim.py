"""Optimisers and learning-rate schedules by name, shared by pretraining and fine-tuning."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

OPTIMIZERS = ("adam", "adamw", "sgd")


def build_optimizer(
    name: str, params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """``adam`` (CASS paper), ``adamw`` (DINO paper) or ``sgd`` (momentum 0.9; App. B ablation)."""
    params = [p for p in params if p.requires_grad]
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
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
