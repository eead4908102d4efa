"""Collapse watch: a net whose outputs all point one way has learned nothing (CASS has no
mechanism against it; from random init it happens). `spread` measures it on a batch of any
method's outputs; `CollapseMonitor` is fed each epoch's per-arm mean."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)
ACTIONS = ("warn", "stop")


def spread(outputs: Tensor) -> float:
    """Collapse diagnostic: std over the batch of the L2-normalised outputs, summed over dims.

    0 means every image maps to the same direction (collapsed). For outputs spread uniformly on
    the unit sphere of dimension d it approaches ``sqrt(d)``.
    """
    return float(spread_tensor(outputs))


def spread_tensor(outputs: Tensor) -> Tensor:
    """:func:`spread` as a 0-d float32 tensor on the outputs' device (no wait for a GPU)."""
    if outputs.ndim != 2 or outputs.shape[0] < 2:
        raise ValueError(f"spread needs (batch >= 2, dim) outputs, got {tuple(outputs.shape)}")
    z = F.normalize(outputs.detach().float(), dim=-1, eps=1e-12)
    return z.std(dim=0).sum()


class CollapseError(RuntimeError):
    """Pretraining stopped because a net's outputs collapsed (collapse_action=stop)."""


@dataclass
class CollapseMonitor:
    threshold: float  # spread below this counts as collapsed
    epochs: int  # consecutive epochs below the threshold before acting
    action: str = "warn"  # warn: log loudly and record; stop: raise CollapseError
    below: dict[str, int] = field(default_factory=dict)  # consecutive epochs below, per arm
    collapsed: dict[str, str] = field(default_factory=dict)  # arm -> its warning, once per arm

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"collapse_action must be one of {ACTIONS}, got {self.action!r}")
        if self.epochs < 1:
            raise ValueError(f"collapse_epochs must be >= 1, got {self.epochs}")

    def update(self, epoch: int, spreads: dict[str, float]) -> None:
        """Record one epoch's spreads; warn once per arm, or raise, when an arm stays collapsed."""
        for arm, value in spreads.items():
            self.below[arm] = self.below.get(arm, 0) + 1 if value < self.threshold else 0
            if self.below[arm] != self.epochs:
                continue
            message = (
                f"COLLAPSE: the {arm} net's output spread has been below {self.threshold} for "
                f"{self.epochs} epoch(s) (epoch {epoch}: {value:.4g}; 0 = every image maps to one "
                "direction). Its fine-tuning starts from a degenerate representation; try a "
                "method that does not collapse (docs/health.md: "
                "cass_plus for the pair; simclr, vicreg or byol for one net), smaller learning "
                "rates, or ImageNet weights (init=imagenet)."
            )
            if self.action == "stop":
                raise CollapseError(message + " Stopped (pretrain.collapse_action=stop).")
            log.warning(message)
            self.collapsed[arm] = message

    @property
    def warnings(self) -> list[str]:
        return list(self.collapsed.values())
