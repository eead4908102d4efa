"""The protocol every pretraining method implements; `pretrain.py` knows only this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor, nn

from cass_hpc.data.transforms import paper_augmentation

Views = Tensor | list[Tensor]  # one view (CASS) or several crops (DINO) per image


@dataclass(frozen=True)
class Progress:
    """Where the loop is; methods derive their own schedules (EMA momentum, temperatures)."""

    epoch: int  # 1-based
    step: int  # 1-based, within the epoch
    steps_per_epoch: int
    epochs: int

    @property
    def fraction(self) -> float:
        """Share of all training steps done before this one, in [0, 1)."""
        done = (self.epoch - 1) * self.steps_per_epoch + (self.step - 1)
        return done / max(1, self.epochs * self.steps_per_epoch)


@dataclass
class StepOutput:
    """What one pretraining step returns to the loop."""

    loss: Tensor
    # Per-arm batch outputs (detached), used for the collapse diagnostic.
    embeddings: dict[str, Tensor] = field(default_factory=dict)


class PretrainMethod(nn.Module):
    """A self-supervised method. Subclasses set ``name`` and ``arms`` and define
    ``training_step``; each entry of ``arms`` gets its own optimiser (and SWA average)."""

    name: str = "?"
    arms: nn.ModuleDict

    def train_transform(self, image_size: int) -> Callable[[np.ndarray], Views]:
        """The augmentation the loop's data should use (default: the CASS paper set)."""
        return paper_augmentation(image_size)

    def training_step(self, views: Views, progress: Progress) -> StepOutput:
        raise NotImplementedError

    def before_optimizer_step(self, progress: Progress) -> None:
        """After backward, before the optimisers step (e.g. DINO freezes its last layer)."""

    def after_optimizer_step(self, progress: Progress) -> None:
        """After the optimisers step (e.g. DINO's teacher EMA update)."""

    def trained_arms(self) -> dict[str, nn.Module]:
        """The nets fine-tuning starts from, by arm name (``Arm`` modules)."""
        return dict(self.arms.items())
