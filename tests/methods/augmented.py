"""A dataset of fixed images passed through a method's own ``train_transform`` (its views)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset


class Augmented(Dataset):
    def __init__(self, images: torch.Tensor, transform: Callable[[torch.Tensor], Any]) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.transform(self.images[index]), 0
