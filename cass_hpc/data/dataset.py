"""Torch datasets over packed shards (HDF5 opened lazily in each DataLoader worker)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cass_hpc.data.shards import Manifest, ShardReader


class ShardDataset(Dataset):
    """One split of a packed dataset, optionally restricted to ``indices`` (a label fraction).

    Items are ``(view, label)``: ``view`` is ``transform(uint8 HWC array)``. The reader opens
    its HDF5 files on first access in the process that reads, so forked or spawned workers each
    get their own handles. The array is ``image_size`` square for a resized pack and at each
    image's own size for an original one (PNG-decoded in the worker), so ``transform`` must end
    at a fixed size for batching: the paper's transforms resize first (``transforms``).
    """

    def __init__(
        self,
        manifest: Manifest,
        split: str,
        transform: Callable[[np.ndarray], torch.Tensor],
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        self.reader = ShardReader(manifest, split)
        self.transform = transform
        all_idx = np.arange(len(self.reader))
        self.indices = all_idx if indices is None else np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(all_idx)):
            raise ValueError(f"indices out of range for split {split!r} of size {len(all_idx)}")
        self.labels = self.reader.labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        """``(view, label)``: a class index, or a float multi-hot vector (multi-label)."""
        index = int(self.indices[item])
        label = self.reader.labels[index]
        target = torch.as_tensor(label, dtype=torch.float32) if label.ndim else int(label)
        return self.transform(self.reader.image(index)), target
