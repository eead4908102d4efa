"""DataLoaders whose every batch is a pure function of (seed, epoch, position), so a job stopped
mid-epoch resumes onto exactly the batches, and augmentations, it would have seen.

Two pieces make that so:

* :class:`EpochSampler` draws epoch ``e``'s order from its own generator seeded by
  ``(seed, e)`` (no state carried between epochs) and can start at any position of that order.
* :class:`SeededItems` draws each item's random augmentation from a generator seeded by
  ``(seed, epoch, index)``. The draw no longer depends on which worker loads the item, on how many
  workers there are, or on what was loaded before it — so skipping the first ``k`` batches of an
  epoch leaves the others unchanged, and ``num_workers`` does not change results.

Usage::

    loader = make_loader(dataset, batch_size=16, train=True, seed=0, workers=2)
    set_position(loader, epoch=3, start_step=5)   # epoch 3 from its 6th batch
    for views, labels in loader: ...
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sized

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across processes and Python versions."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)``: a seeded permutation of ``range(n)`` per epoch (or the identity
    with ``shuffle=False``), from position ``start`` on. ``len`` is always the whole epoch."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.start = 1, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.n:
            raise ValueError(f"start must be in [0, {self.n}], got {start}")
        self.epoch, self.start = epoch, start

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        return torch.randperm(self.n, generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for index in self.order(epoch)[self.start :].tolist():
            yield epoch, index

    def __len__(self) -> int:
        return self.n


class SeededItems(Dataset):
    """Wraps a dataset whose transform is random: item ``(epoch, i)`` is ``dataset[i]`` drawn
    with the CPU generator seeded by ``(seed, epoch, i)``; the caller's generator state is left
    untouched (forked and restored), so model-side randomness does not see data loading."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        assert isinstance(self.dataset, Sized)
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> object:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed would also reseed CUDA, the model's
            torch.default_generator.manual_seed(mix_seed(self.seed, epoch, index))
            return self.dataset[index]


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    seed: int,
    workers: int,
    pin_memory: bool | None = None,
) -> DataLoader:
    """Training loaders shuffle per epoch and seed every item (see module doc); evaluation
    loaders read in order without randomness. ``pin_memory`` (None: when torch sees a GPU) puts
    batches in page-locked memory, so their copy to the GPU overlaps compute (non_blocking);
    workers, if any, persist across epochs (no start-up per epoch)."""
    n = len(dataset)  # type: ignore[arg-type]
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    # its own generator: the DataLoader would otherwise draw worker seeds from the global one,
    # which the model's randomness (dropout, drop-path) uses and checkpoints restore
    generator = torch.Generator().manual_seed(seed)
    if not train:
        return DataLoader(
            dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
            generator=generator, pin_memory=pin,
        )  # fmt: skip
    return DataLoader(
        SeededItems(dataset, seed),
        batch_size=batch_size,
        sampler=EpochSampler(n, seed),
        # a trailing batch of one breaks BatchNorm in training mode
        drop_last=n > batch_size and n % batch_size == 1,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=generator,
        pin_memory=pin,
    )


def set_position(loader: DataLoader | Iterable, epoch: int, start_step: int = 0) -> bool:
    """Point ``loader`` at ``epoch``, skipping its first ``start_step`` batches. Returns False
    (and does nothing) for a loader without an :class:`EpochSampler`; such a loader cannot start
    mid-epoch, so ``start_step > 0`` is an error there."""
    sampler = getattr(loader, "sampler", None)  # any iterable of batches is accepted
    if not isinstance(sampler, EpochSampler):
        if start_step:
            raise ValueError("this DataLoader cannot resume mid-epoch (no EpochSampler)")
        return False
    sampler.set_epoch(epoch, start_step * int(getattr(loader, "batch_size", 1) or 1))
    return True
