"""What a packed dataset is: its constants, its manifest and the error every check raises.

The manifest (``ROOT/manifest.json``) records the classes, the split counts, how images are
stored (``store``), the options that produced the pack and, per shard, its SHA-256 and its size
in bytes, so a truncated or corrupt copy fails at start-up rather than hours into a job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "cass-hpc-shards/1"
SPLITS = ("train", "val", "test")
# "resized": (n, S, S, 3) uint8 arrays, S = image_size (the paper's 384 px, App. F.2.2).
# "original": each image at its own size as lossless PNG bytes, decoded by the reader.
STORES = ("resized", "original")
MANIFEST_NAME = "manifest.json"
REPACK_HINT = "re-pack the dataset (python -m preprocess <reader> SRC OUT --overwrite)"
# Manifest fields read from manifest.json, with the type each is coerced to.
_FIELD_TYPES = {
    "name": str, "classes": tuple, "image_size": int, "synthetic": bool, "source": str,
    "seed": int, "params": dict, "splits": dict, "class_counts": dict, "skipped": tuple,
    "multilabel": bool, "store": str,
}  # fmt: skip
# Fields added after the first packs were written, with the value an older manifest implies.
_OPTIONAL = {"skipped": (), "multilabel": False, "store": "resized"}


class ShardError(ValueError):
    """Packed dataset is missing, incomplete, truncated or corrupt."""


@dataclass(frozen=True)
class ShardInfo:
    """One shard file of a packed dataset, as recorded in the manifest."""

    file: str
    split: str
    count: int
    sha256: str
    size_bytes: int | None = None  # None in manifests written before sizes were recorded


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a packed dataset rooted at ``root``.

    ``image_size`` is the stored side for ``store == "resized"``; for ``"original"`` it is the
    longest side of any stored image (every image is resized by the run's transforms anyway).
    """

    root: Path
    name: str
    classes: tuple[str, ...]
    image_size: int
    synthetic: bool
    source: str
    seed: int
    params: dict
    splits: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    shards: tuple[ShardInfo, ...]
    skipped: tuple = field(default=())
    multilabel: bool = False  # labels are multi-hot (n, num_classes) instead of indices (n,)
    store: str = "resized"  # one of STORES

    @property
    def num_classes(self) -> int:
        """Number of classes; labels are ``0 .. num_classes - 1`` in ``classes`` order."""
        return len(self.classes)

    def shards_for(self, split: str) -> list[ShardInfo]:
        """The shards of ``split`` in order (empty for a split with no images)."""
        if split not in self.splits:
            present = ", ".join(self.splits)
            raise ValueError(f"{self.root}: unknown split {split!r}; this dataset has {present}")
        return [s for s in self.shards if s.split == split]


def manifest_from_json(root: Path, raw: dict[str, Any]) -> Manifest:
    """The Manifest of ``raw`` (parsed manifest.json); ShardError if it is inconsistent."""
    where = root / MANIFEST_NAME
    if raw.get("format") != FORMAT:
        raise ShardError(f"{where}: format {raw.get('format')!r} is not {FORMAT!r}; {REPACK_HINT}")
    raw = {**_OPTIONAL, **raw}
    values = {key: convert(raw[key]) for key, convert in _FIELD_TYPES.items()}
    if values["store"] not in STORES:
        raise ShardError(f"{where}: unknown store {values['store']!r} (expected one of "
                         f"{', '.join(STORES)}); {REPACK_HINT}")  # fmt: skip
    shards = tuple(
        ShardInfo(
            str(s["file"]),
            str(s["split"]),
            int(s["count"]),
            str(s["sha256"]),
            None if s.get("size_bytes") is None else int(s["size_bytes"]),
        )  # fmt: skip
        for s in raw["shards"]
    )
    for split, count in values["splits"].items():
        if (listed := sum(s.count for s in shards if s.split == split)) != count:
            raise ShardError(f"{where}: split {split!r} claims {count} images but its shards "
                             f"hold {listed}; {REPACK_HINT}")  # fmt: skip
    return Manifest(root=root, shards=shards, **values)
