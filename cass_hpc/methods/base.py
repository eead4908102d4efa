"""The protocol every pretraining method implements; `pretrain.py` knows only this."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from torch import Tensor, nn


@dataclass
class StepOutput:
    """What one pretraining step returns to the loop."""

    loss: Tensor
    # Per-arm batch outputs (detached), used for the collapse diagnostic.
    embeddings: dict[str, Tensor] = field(default_factory=dict)


class PretrainMethod(Protocol):
    """A self-supervised method: an ``nn.Module`` whose ``arms`` are optimised separately."""

    name: str
    arms: nn.ModuleDict  # one optimiser (and SWA average) per arm

    def training_step(self, images: Tensor) -> StepOutput: ...

    def trained_arms(self) -> dict[str, nn.Module]: ...
