"""The packed-dataset format: HDF5 shards plus a manifest — the only module that touches HDF5.

A packed dataset is a directory::

    ROOT/manifest.json            written last: a directory without it is not a dataset
    ROOT/train-00000.h5 ...       one file per ``shard_size`` images of a split
    ROOT/val-00000.h5 ...
    ROOT/test-00000.h5 ...

Each shard holds ``images`` uint8 (n, S, S, 3), one image per chunk, uncompressed (the fastest
layout for random access, PERF-NOTES), ``labels`` int64 (n,) and ``ids`` UTF-8 strings (n,).
The manifest records classes, counts, the options that produced the pack and a SHA-256 per shard,
so a truncated or corrupt copy fails at start-up, not hours into a job. Usage::

    with ShardWriter(root, name="demo", classes=["a", "b"], image_size=64, seed=0,
                     source="synthetic:shapes", synthetic=True, params={}) as writer:
        writer.add("train", image, label=0, sample_id="a/0001")
        manifest = writer.commit()
    image = ShardReader(read_manifest(root), "train").image(0)
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cass_hpc import store

FORMAT = "cass-hpc-shards/1"
SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.json"
_HASH_BLOCK_BYTES = 1 << 20
_REPACK = "re-pack the dataset (python -m preprocess <reader> SRC OUT --overwrite)"
# Manifest fields read from manifest.json, with the type each is coerced to.
_FIELD_TYPES = {
    "name": str, "classes": tuple, "image_size": int, "synthetic": bool, "source": str,
    "seed": int, "params": dict, "splits": dict, "class_counts": dict, "skipped": tuple,
    "multilabel": bool,
}  # fmt: skip


class ShardError(ValueError):
    """Packed dataset is missing, incomplete, truncated or corrupt."""


@dataclass(frozen=True)
class ShardInfo:
    """One shard file of a packed dataset, as recorded in the manifest."""

    file: str
    split: str
    count: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a packed dataset rooted at ``root``."""

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


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, streamed in 1 MiB blocks so multi-GB shards never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(root: str | Path, *, verify: bool = True) -> Manifest:
    """Load ``ROOT/manifest.json``, check every shard exists and, with ``verify``, its checksum.

    Raises ShardError when ROOT is not a complete packed dataset, so a job fails at start-up
    with a clear message instead of hours later inside a DataLoader worker.
    """
    root = Path(root).expanduser().resolve()
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ShardError(
            f"{root}: no {MANIFEST_NAME} — not a packed dataset, or the pack was interrupted; "
            f"re-run python -m preprocess <reader> SRC {root}"
        )
    try:
        manifest = _manifest_from_json(root, json.loads(path.read_text(encoding="utf-8")))
    except ShardError:
        raise
    except (UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ShardError(f"{path}: unreadable manifest ({err!r}); {_REPACK}") from err
    for shard in manifest.shards:
        shard_path = root / shard.file
        if not shard_path.is_file():
            raise ShardError(f"{shard_path}: shard listed in the manifest is missing — the copy "
                             f"is incomplete; copy it again or {_REPACK}")  # fmt: skip
        if verify and (actual := sha256_file(shard_path)) != shard.sha256:
            raise ShardError(
                f"{shard_path}: checksum mismatch (expected {shard.sha256[:8]}…, got "
                f"{actual[:8]}…) — the shard is corrupt or truncated; re-pack the dataset"
            )
    return manifest


def _manifest_from_json(root: Path, raw: dict[str, Any]) -> Manifest:
    if raw.get("format") != FORMAT:
        raise ShardError(f"{root / MANIFEST_NAME}: format {raw.get('format')!r} is not "
                         f"{FORMAT!r}; {_REPACK}")  # fmt: skip
    raw = {"skipped": (), "multilabel": False, **raw}  # the optional fields
    values = {key: convert(raw[key]) for key, convert in _FIELD_TYPES.items()}
    shards = tuple(
        ShardInfo(str(s["file"]), str(s["split"]), int(s["count"]), str(s["sha256"]))
        for s in raw["shards"]
    )
    for split, count in values["splits"].items():
        if (listed := sum(s.count for s in shards if s.split == split)) != count:
            raise ShardError(f"{root / MANIFEST_NAME}: split {split!r} claims {count} images "
                             f"but its shards hold {listed}; {_REPACK}")  # fmt: skip
    return Manifest(root=root, shards=shards, **values)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _fsync(path: Path) -> None:
    """Flush a file or directory to disk before the rename that publishes it (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_target(root: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an earlier packed dataset or an empty directory."""
    if not root.exists():
        return
    if not root.is_dir():
        raise ShardError(f"{root}: exists and is not a directory; choose another output path")
    is_dataset = (root / MANIFEST_NAME).is_file()
    if not is_dataset and any(root.iterdir()):
        raise ShardError(f"{root}: exists and is not a packed dataset (no {MANIFEST_NAME}); "
                         f"choose another output path or delete it yourself")  # fmt: skip
    if is_dataset and not overwrite:
        raise ShardError(f"{root}: already holds a packed dataset; pass --overwrite to replace it")


def remove_stale_staging(root: str | Path) -> list[Path]:
    """Delete ``<ROOT>.partial-<pid>`` / ``.old-<pid>`` dirs left by killed packs; return them.

    A staging dir whose process is still alive means a concurrent pack of the same ROOT, which
    is refused rather than raced.
    """
    root = Path(root).expanduser().resolve()
    removed: list[Path] = []
    for marker in (".partial-", ".old-"):
        for path in sorted(root.parent.glob(f"{root.name}{marker}*")):
            pid = path.name[len(root.name) + len(marker) :]
            if not pid.isdigit():
                continue
            if int(pid) != os.getpid() and _pid_alive(int(pid)):
                raise ShardError(f"{path}: another pack (pid {pid}) is writing {root}; wait "
                                 f"for it to finish or stop it, then re-run")  # fmt: skip
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class _OpenShard:
    """The shard file being filled for one split: images written as they come, the rest at close."""

    def __init__(self, path: Path, capacity: int, image_size: int) -> None:
        self.path, self.file = path, h5py.File(path, "w")
        shape = (image_size, image_size, 3)
        # One image per chunk, uncompressed: one read per random access, no decode cost.
        self.images = self.file.create_dataset(
            "images", shape=(capacity, *shape), maxshape=(capacity, *shape), dtype=np.uint8,
            chunks=(1, *shape), track_times=False,  # no timestamps: same seed → same bytes
        )  # fmt: skip
        self.labels: list[int | list[int]] = []  # class index, or multi-hot row (multi-label)
        self.ids: list[str] = []

    def close(self) -> int:
        self.images.resize(len(self.labels), axis=0)
        labels = np.asarray(self.labels, dtype=np.int64)
        self.file.create_dataset("labels", data=labels, track_times=False)
        text = h5py.string_dtype("utf-8")
        self.file.create_dataset("ids", data=self.ids, dtype=text, track_times=False)
        self.file.close()
        return len(self.labels)


class ShardWriter:
    """Writes a packed dataset atomically.

    Everything goes into a sibling staging dir ``<ROOT>.partial-<pid>``; ``commit()`` checksums
    the shards, writes the manifest last and renames the staging dir onto ROOT (an existing
    dataset at ROOT, with ``overwrite=True``, is moved aside first and then deleted). Closing the
    writer without commit (an exception, a context-manager exit with an error) deletes the
    staging dir. A SIGKILLed pack leaves only a ``*.partial-*`` dir, which is never taken for a
    dataset (there is no manifest at ROOT) and which the next pack of the same ROOT removes.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        name: str,
        classes: Sequence[str],
        image_size: int,
        seed: int,
        source: str,
        synthetic: bool,
        params: dict,
        shard_size: int = 1024,
        overwrite: bool = False,
        multilabel: bool = False,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.multilabel = bool(multilabel)
        self.classes = tuple(str(c) for c in classes)
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"{self.root}: classes must be non-empty and unique, got {classes}")
        if image_size <= 0 or shard_size <= 0:
            raise ValueError(f"{self.root}: image_size and shard_size must be positive, got "
                             f"{image_size} and {shard_size}")  # fmt: skip
        try:
            params = json.loads(json.dumps(params))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{self.root}: params must be JSON-serialisable ({err})") from err
        self.image_size, self.shard_size, self.overwrite = int(image_size), shard_size, overwrite
        self._meta = {
            "format": FORMAT, "name": name, "classes": list(self.classes),
            "image_size": self.image_size, "synthetic": bool(synthetic), "source": source,
            "seed": int(seed), "params": params, "multilabel": self.multilabel,
        }  # fmt: skip
        _check_target(self.root, overwrite)
        remove_stale_staging(self.root)
        self.staging = self.root.with_name(f"{self.root.name}.partial-{os.getpid()}")
        self.staging.mkdir(parents=True)
        self._open: dict[str, _OpenShard] = {}
        self._closed: list[tuple[str, str, int]] = []  # (file, split, count)
        self._class_counts = {s: dict.fromkeys(self.classes, 0) for s in SPLITS}
        self._ids: set[str] = set()
        self._skipped: list[dict[str, str]] = []
        self._done = False

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._done:
            self.discard()

    def add(
        self, split: str, image: np.ndarray, label: int | Sequence[int], sample_id: str
    ) -> None:
        """Append one (S, S, 3) uint8 image with its label (a class index; for a multi-label
        dataset the sequence of class indices present, possibly empty) to ``split``."""
        self._check_open()
        if split not in SPLITS:
            raise ValueError(f"{sample_id}: split {split!r} is not one of {', '.join(SPLITS)}")
        size = self.image_size
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image)
        if got != f"uint8 {(size, size, 3)}":
            raise ValueError(f"{sample_id}: image must be uint8 ({size}, {size}, 3), got {got}; "
                             f"resize and convert to RGB before adding")  # fmt: skip
        present = self._check_label(label, sample_id)
        if not sample_id or sample_id in self._ids:
            raise ValueError(f"{sample_id!r}: sample ids must be non-empty and unique")
        shard = self._open.get(split)
        if shard is None:
            index = sum(1 for _, s, _ in self._closed if s == split)
            shard = _OpenShard(self.staging / f"{split}-{index:05d}.h5", self.shard_size, size)
            self._open[split] = shard
        shard.images[len(shard.labels)] = image
        if self.multilabel:
            shard.labels.append([int(c in present) for c in range(len(self.classes))])
        else:
            shard.labels.append(present[0])
        shard.ids.append(sample_id)
        self._ids.add(sample_id)
        for c in present:
            self._class_counts[split][self.classes[c]] += 1
        if len(shard.labels) == self.shard_size:
            self._close_shard(split)

    def _check_label(self, label: int | Sequence[int], sample_id: str) -> list[int]:
        """The class indices the label names; ValueError naming the sample if out of range."""
        last = len(self.classes) - 1
        if self.multilabel:
            if isinstance(label, int | np.integer) or len(set(label)) != len(label):
                raise ValueError(f"{sample_id}: a multi-label label is a list of distinct class "
                                 f"indices, got {label!r}")  # fmt: skip
            present = sorted(int(c) for c in label)
        else:
            if not isinstance(label, int | np.integer):
                raise ValueError(f"{sample_id}: label must be a class index, got {label!r}")
            present = [int(label)]
        if any(not 0 <= c <= last for c in present):
            raise ValueError(f"{sample_id}: label {label!r} is outside 0..{last}")
        return present

    def skip(self, sample_id: str, reason: str) -> None:
        """Record a sample left out of the pack (listed in the manifest's ``skipped``)."""
        self._check_open()
        self._skipped.append({"id": sample_id, "reason": reason})

    def commit(self) -> Manifest:
        """Close shards, checksum them, write the manifest last and publish ROOT atomically."""
        self._check_open()
        try:
            for split in list(self._open):
                self._close_shard(split)
            if not self._closed:
                raise ValueError(f"{self.root}: no images were added; nothing to pack")
            shards = []
            for file, split, count in sorted(self._closed, key=lambda s: SPLITS.index(s[1])):
                _fsync(self.staging / file)
                shards.append(ShardInfo(file, split, count, sha256_file(self.staging / file)))
            counts = {s: sum(i.count for i in shards if i.split == s) for s in SPLITS}
            raw = {**self._meta, "splits": counts, "class_counts": self._class_counts,
                   "skipped": self._skipped, "shards": [asdict(s) for s in shards]}  # fmt: skip
            store.write_json(self.staging / MANIFEST_NAME, raw)
            self._publish()
        except BaseException:
            self.discard()
            raise
        self._done = True
        return _manifest_from_json(self.root, raw)

    def discard(self) -> None:
        """Drop everything written so far (idempotent); ROOT is left as it was."""
        for shard in self._open.values():
            with contextlib.suppress(Exception):
                shard.file.close()
        self._open.clear()
        shutil.rmtree(self.staging, ignore_errors=True)
        self._done = True

    def _check_open(self) -> None:
        if self._done:
            raise RuntimeError(f"{self.root}: this ShardWriter was already committed or discarded")

    def _close_shard(self, split: str) -> None:
        shard = self._open.pop(split)
        self._closed.append((shard.path.name, split, shard.close()))

    def _publish(self) -> None:
        _check_target(self.root, self.overwrite)
        aside = self.root.with_name(f"{self.root.name}.old-{os.getpid()}")
        had_old = self.root.exists()
        if had_old:
            os.rename(self.root, aside)
        os.rename(self.staging, self.root)
        _fsync(self.root.parent)
        if had_old:
            shutil.rmtree(aside, ignore_errors=True)


def _open_for_read(path: Path) -> h5py.File:
    # No HDF5 file locking: Lustre/NFS often lack flock, and shards are never written in place.
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as err:
        raise ShardError(f"{path}: cannot open shard ({err}) — the file is truncated or "
                         f"corrupt; {_REPACK}") from err  # fmt: skip


class ShardReader:
    """Random access to one split's images.

    ``labels`` and ``ids`` are read once at construction (each shard opened, read and closed).
    Shard files for images are opened lazily on the first ``image()`` call in the current
    process, so DataLoader workers each open their own handles (an h5py handle must never cross
    a fork); pickling drops open handles, so the reader also works under spawn.
    """

    def __init__(self, manifest: Manifest, split: str) -> None:
        self.manifest, self.split = manifest, split
        self.paths = [manifest.root / s.file for s in manifest.shards_for(split)]
        self._starts = [0]
        empty = (0, manifest.num_classes) if manifest.multilabel else (0,)
        labels, self.ids = [np.zeros(empty, dtype=np.int64)], []
        for shard, path in zip(manifest.shards_for(split), self.paths, strict=True):
            with _open_for_read(path) as handle:
                try:
                    labels.append(np.asarray(handle["labels"][...], dtype=np.int64))
                    self.ids.extend(handle["ids"].asstr()[...].tolist())
                    shape = handle["images"].shape
                except (KeyError, OSError) as err:
                    raise ShardError(f"{path}: unreadable shard ({err}); {_REPACK}") from err
            expected = (shard.count, manifest.image_size, manifest.image_size, 3)
            if len(labels[-1]) != shard.count or shape != expected:
                raise ShardError(f"{path}: holds {shape} images and {len(labels[-1])} labels, "
                                 f"the manifest says {expected}; {_REPACK}")  # fmt: skip
            self._starts.append(self._starts[-1] + shard.count)
        self.labels: np.ndarray = np.concatenate(labels)
        self._images: dict[int, h5py.Dataset] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return self._starts[-1]

    def image(self, index: int) -> np.ndarray:
        """The (S, S, 3) uint8 image at ``index`` of this split (negative indices count back)."""
        length = len(self)
        if not -length <= index < length:
            raise IndexError(f"index {index} is out of range for split {self.split!r} of "
                             f"{length} images")  # fmt: skip
        index %= length
        shard = bisect.bisect_right(self._starts, index) - 1
        if self._pid != os.getpid():  # forked after opening: the parent's handles are not ours
            self._images, self._pid = {}, os.getpid()
        images = self._images.get(shard)
        try:
            if images is None:
                images = self._images[shard] = _open_for_read(self.paths[shard])["images"]
            return images[index - self._starts[shard]]
        except (OSError, KeyError) as err:
            raise ShardError(f"{self.paths[shard]}: cannot read image ({err}) — the shard is "
                             f"truncated or corrupt; {_REPACK}") from err  # fmt: skip

    def close(self) -> None:
        """Close any open shard files (safe to call repeatedly)."""
        for images in self._images.values():
            with contextlib.suppress(Exception):
                images.file.close()
        self._images = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_images": {}}  # handles never travel to another process
