"""Re-drawn train/val/test splits of a packed dataset: ``split_seed`` as a grid axis.

A tiny cohort (the autoimmune set: 198 images, ~14 to train on at 10 %) gives results that
depend on which images happened to land in the test split as much as on the training seed.
Repeated hold-out averages over that too: with ``split_seed`` an int, every packed image (train,
val and test pooled) is drawn again into train/val/test, stratified (`splits.stratified_split`;
multi-hot labels by iterative stratification), in the packed split's own proportions (the paper's
70/10/20 for a pack that drew its splits, §4.2; a reader's own proportions otherwise), so a
re-drawn split is the same size as the packed one. ``split_seed=None`` is the packed split itself.

The draw depends only on the packed labels and the seed; :func:`write_split_file` records it beside
the run (never in the dataset folder, which may be shared or read-only). Usage::

    train = split_dataset(manifest, "train", transform, split_seed=1)   # a re-drawn train split
    train.labels                                  # its labels, in the order items are read
    write_split_file(manifest, 1, store_root)     # <store_root>/splits/<name>-<key>-split1.json
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cass_hpc import store
from cass_hpc.data.dataset import ShardDataset
from cass_hpc.data.shards import SPLITS, Manifest, ShardReader
from cass_hpc.data.splits import stratified_split

SPLIT_SCHEMA = "cass-hpc-split/1"
# drawn members per (dataset root, shard checksums, split_seed): a cell asks for them several times
_DRAWN: dict[tuple, dict[str, np.ndarray]] = {}


def packed_splits(manifest: Manifest) -> list[str]:
    """The packed splits in their canonical order (train, val, test)."""
    return [s for s in SPLITS if s in manifest.splits]


def split_fractions(manifest: Manifest) -> dict[str, float]:
    """The packed split's proportions (e.g. 0.7/0.1/0.2), the fractions a re-draw uses."""
    total = sum(manifest.splits[s] for s in packed_splits(manifest))
    if total == 0:
        raise ValueError(f"dataset {manifest.name!r} ({manifest.root}) holds no images")
    return {s: manifest.splits[s] / total for s in packed_splits(manifest)}


def check_split_seed(split_seed: object) -> int | None:
    """``split_seed`` as None or a non-negative int; ValueError naming it otherwise."""
    if split_seed is None:
        return None
    if isinstance(split_seed, bool) or not isinstance(split_seed, int | np.integer):
        raise ValueError(f"split_seed must be null or an integer >= 0, got {split_seed!r}")
    if split_seed < 0:
        raise ValueError(f"split_seed must be null or an integer >= 0, got {split_seed}")
    return int(split_seed)


def redraw(manifest: Manifest, split_seed: int) -> dict[str, np.ndarray]:
    """Per split (train, val, test), its members as an ``(n, 2)`` int64 array of (packed split
    number in :func:`packed_splits` order, index in that packed split), in pooled order.

    The members partition the packed images. Raises ValueError naming the dataset when a class
    has fewer images than there are splits to fill."""
    split_seed = check_split_seed(split_seed)
    if split_seed is None:
        raise ValueError("redraw needs an integer split_seed; None is the packed split")
    if groups := manifest.params.get("split_groups"):  # e.g. elpv: test = other modules
        raise ValueError(
            f"dataset {manifest.name!r} ({manifest.root}) was packed with a {groups}-disjoint "
            f"split (its test images come from other {groups}s than training); split_seed="
            f"{split_seed} would re-draw images across {groups}s and leak: use split_seed=null"
        )
    cache_key = (str(manifest.root), tuple(s.sha256 for s in manifest.shards), split_seed)
    if cache_key not in _DRAWN:
        _DRAWN[cache_key] = _draw(manifest, split_seed)
    return _DRAWN[cache_key]


def _draw(manifest: Manifest, split_seed: int) -> dict[str, np.ndarray]:
    names = packed_splits(manifest)
    labels, origin = [], []
    for number, name in enumerate(names):
        packed = ShardReader(manifest, name).labels
        labels.append(packed)
        origin.append(np.stack([np.full(len(packed), number), np.arange(len(packed))], axis=1))
    pooled, where = np.concatenate(labels), np.concatenate(origin).astype(np.int64)
    try:
        parts = stratified_split(pooled, split_fractions(manifest), split_seed)
    except ValueError as err:
        raise ValueError(
            f"dataset {manifest.name!r} ({manifest.root}): split_seed={split_seed} cannot "
            f"re-draw the splits: {err}"
        ) from None
    drawn = {name: where[indices] for name, indices in parts.items()}
    for members in drawn.values():
        members.setflags(write=False)  # cached: shared by every caller
    return drawn


class ResplitDataset(Dataset):
    """One re-drawn split (:func:`redraw`), optionally restricted to ``indices`` into it (a label
    fraction). Items are ``(view, label)`` exactly as `ShardDataset`'s; ``labels`` are the
    members' labels in item order. Each packed split is read by its own lazy `ShardReader`."""

    def __init__(
        self,
        manifest: Manifest,
        split: str,
        transform: Callable[[np.ndarray], torch.Tensor],
        split_seed: int,
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        drawn = redraw(manifest, split_seed)
        if split not in drawn:
            raise ValueError(f"{manifest.root}: unknown split {split!r}; it has {', '.join(drawn)}")
        self.split, self.split_seed, self.transform = split, split_seed, transform
        self.members = drawn[split]
        all_idx = np.arange(len(self.members))
        self.indices = all_idx if indices is None else np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(all_idx)):
            raise ValueError(
                f"indices out of range for the re-drawn split {split!r} of size {len(all_idx)}"
            )
        self.readers = [ShardReader(manifest, name) for name in packed_splits(manifest)]
        self.labels = self._pick(lambda reader: reader.labels)
        self.ids = [str(i) for i in self._pick(lambda reader: np.asarray(reader.ids, dtype=object))]

    def _pick(self, column: Callable[[ShardReader], np.ndarray]) -> np.ndarray:
        """``column`` of every packed split, at this dataset's members, in item order."""
        pooled = np.concatenate([column(r) for r in self.readers])
        offsets = np.cumsum([0] + [len(r) for r in self.readers])
        chosen = self.members[self.indices]
        return pooled[offsets[chosen[:, 0]] + chosen[:, 1]]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        number, index = (int(v) for v in self.members[self.indices[item]])
        reader = self.readers[number]
        label = reader.labels[index]
        target = torch.as_tensor(label, dtype=torch.float32) if label.ndim else int(label)
        return self.transform(reader.image(index)), target


def split_dataset(
    manifest: Manifest,
    split: str,
    transform: Callable[[np.ndarray], torch.Tensor],
    split_seed: int | None = None,
    indices: Sequence[int] | np.ndarray | None = None,
) -> ShardDataset | ResplitDataset:
    """The dataset of ``split``: the packed one (``split_seed=None``, a plain `ShardDataset`) or
    the one re-drawn by ``split_seed``; ``indices`` restrict it (a label-fraction subset)."""
    if check_split_seed(split_seed) is None:
        return ShardDataset(manifest, split, transform, indices)
    return ResplitDataset(manifest, split, transform, split_seed, indices)


def split_labels(manifest: Manifest, split: str, split_seed: int | None = None) -> np.ndarray:
    """The labels of ``split`` (packed or re-drawn), in item order, without reading images."""
    if check_split_seed(split_seed) is None:
        return ShardReader(manifest, split).labels
    return ResplitDataset(manifest, split, _no_transform, split_seed).labels


def _no_transform(image: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(image)


def split_file(manifest: Manifest, split_seed: int, store_root: Path) -> Path:
    """Where the draw of ``split_seed`` is recorded: ``<store_root>/splits/<name>-<key>-split<seed>
    .json``, ``key`` a hash of the shard checksums (two packs that share a name never collide)."""
    data_key = store.stable_key(sorted(s.sha256 for s in manifest.shards), length=8)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", manifest.name) or "dataset"
    return Path(store_root) / "splits" / f"{name}-{data_key}-split{split_seed}.json"


def split_record(manifest: Manifest, split_seed: int) -> dict:
    """The draw as JSON: per split the sample ids and their (packed split, index), in item order."""
    names = packed_splits(manifest)
    splits = {}
    for split, members in redraw(manifest, split_seed).items():
        ids = ResplitDataset(manifest, split, _no_transform, split_seed).ids
        packed = [[names[int(n)], int(i)] for n, i in members]
        splits[split] = {"count": len(members), "ids": ids, "packed": packed}
    return {
        "schema": SPLIT_SCHEMA,
        "dataset": manifest.name,
        "shards": sorted(s.sha256 for s in manifest.shards),  # the packed content it was drawn from
        "split_seed": split_seed,
        "fractions": split_fractions(manifest),
        "splits": splits,
    }


def write_split_file(manifest: Manifest, split_seed: int | None, store_root: Path) -> Path | None:
    """Record the draw of ``split_seed`` under ``store_root`` (atomically, once) and return its
    path; None for the packed split (``split_seed=None``: nothing to record). A file already
    there must hold the same draw: ValueError if this code draws another."""
    if check_split_seed(split_seed) is None:
        return None
    path = split_file(manifest, split_seed, store_root)
    record = split_record(manifest, split_seed)
    if path.exists():
        if store.read_json(path) != record:
            raise ValueError(
                f"{path} records another draw for split_seed={split_seed} than this code makes "
                f"(the splitting code changed?); runs keyed on it would mix two splits — move "
                f"the file (and the runs that used it) away to accept the new draw"
            )
        return path
    store.write_json(path, record)
    return path


__all__ = [
    "SPLIT_SCHEMA",
    "ResplitDataset",
    "check_split_seed",
    "packed_splits",
    "redraw",
    "split_dataset",
    "split_fractions",
    "split_file",
    "split_labels",
    "split_record",
    "write_split_file",
]
