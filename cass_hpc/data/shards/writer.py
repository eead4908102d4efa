"""Writing a packed dataset atomically: a staging dir, shards filled in order, manifest last.

The bytes written are a pure function of what is added and in which order: datasets carry no
timestamps (``track_times=False``), are created in a fixed order with fixed chunking, and the
manifest holds no creation time, so packing the same source twice gives identical files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np

from cass_hpc import store
from cass_hpc.data.shards.checksums import VERIFIED_NAME, sha256_file
from cass_hpc.data.shards.codec import encode_png, png_shape
from cass_hpc.data.shards.format import (
    FORMAT,
    MANIFEST_NAME,
    SPLITS,
    STORES,
    Manifest,
    ShardError,
    ShardInfo,
    manifest_from_json,
)

_FORMAT_FAMILY = FORMAT.rsplit("/", 1)[0] + "/"  # "cass-hpc-shards/": any version is ours
_PACK_NAMES = frozenset({MANIFEST_NAME, VERIFIED_NAME})  # besides the shards
_SHARD_NAME = re.compile(rf"({'|'.join(SPLITS)})-\d{{5,}}\.h5")
_PNG_CHUNK = 64  # PNG-bytes datasets hold 16-byte heap references: 64 per chunk is 1 KiB


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
    """Refuse to replace anything but an empty directory or one holding just a packed dataset
    of ours (our manifest and the files a pack writes): --overwrite never deletes other data."""
    if not root.exists():
        return
    if not root.is_dir():
        raise ShardError(f"{root}: exists and is not a directory; choose another output path")
    names = sorted(p.name for p in root.iterdir())
    if not names:
        return
    if MANIFEST_NAME not in names:
        raise ShardError(f"{root}: exists and is not a packed dataset (no {MANIFEST_NAME}); "
                         f"choose another output path or delete it yourself")  # fmt: skip
    if not _our_manifest(root / MANIFEST_NAME):
        raise ShardError(
            f"{root}: its {MANIFEST_NAME} is not a cass-hpc manifest, so this is not a packed "
            f"dataset; choose another output path"
        )
    foreign = [n for n in names if n not in _PACK_NAMES and not _SHARD_NAME.fullmatch(n)]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise ShardError(
            f"{root}: holds {foreign[0]!r}{more} besides a packed dataset; --overwrite replaces "
            f"only a folder holding just a pack — move {'them' if more else 'it'} out or choose "
            f"another output path"
        )
    if not overwrite:
        raise ShardError(f"{root}: already holds a packed dataset; pass --overwrite to replace it")


def _our_manifest(path: Path) -> bool:
    """Whether ``path`` is a manifest a ShardWriter wrote (this format or an older one)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(raw, dict) and str(raw.get("format", "")).startswith(_FORMAT_FAMILY)


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
    """The shard file being filled for one split: images written as they come, the rest at close.

    ``image_size`` set: ``images`` is (n, S, S, 3) uint8, one image per chunk, uncompressed (one
    read per random access, no decode cost; PERF-NOTES). ``image_size`` None (original store):
    ``images`` is (n,) variable-length uint8 PNG bytes and ``sizes`` (n, 2) their (H, W).
    """

    def __init__(self, path: Path, capacity: int, image_size: int | None) -> None:
        self.path, self.file = path, h5py.File(path, "w")
        if image_size is None:
            self.images = self.file.create_dataset(
                "images", shape=(capacity,), maxshape=(capacity,),
                dtype=h5py.vlen_dtype(np.uint8), chunks=(min(capacity, _PNG_CHUNK),),
                track_times=False,
            )  # fmt: skip
        else:
            shape = (image_size, image_size, 3)
            self.images = self.file.create_dataset(
                "images", shape=(capacity, *shape), maxshape=(capacity, *shape),
                dtype=np.uint8, chunks=(1, *shape), track_times=False,
            )  # fmt: skip
        self.sizes: list[tuple[int, int]] | None = None if image_size else []
        self.labels: list[int | list[int]] = []  # class index, or multi-hot row (multi-label)
        self.ids: list[str] = []

    def close(self) -> int:
        self.images.resize(len(self.labels), axis=0)
        labels = np.asarray(self.labels, dtype=np.int64)
        self.file.create_dataset("labels", data=labels, track_times=False)
        text = h5py.string_dtype("utf-8")
        self.file.create_dataset("ids", data=self.ids, dtype=text, track_times=False)
        if self.sizes is not None:
            sizes = np.asarray(self.sizes, dtype=np.int64).reshape(-1, 2)
            self.file.create_dataset("sizes", data=sizes, track_times=False)
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

    ``store="resized"`` (default) takes (S, S, 3) arrays, S = ``image_size``;
    ``store="original"`` takes images of any size (arrays, or PNG bytes from ``encode_png`` so
    the encoding can run in worker processes) and ``image_size`` must be None.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        name: str,
        classes: Sequence[str],
        image_size: int | None,
        seed: int,
        source: str,
        synthetic: bool,
        params: dict,
        shard_size: int = 1024,
        overwrite: bool = False,
        multilabel: bool = False,
        store: str = "resized",
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.multilabel = bool(multilabel)
        self.classes = tuple(str(c) for c in classes)
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"{self.root}: classes must be non-empty and unique, got {classes}")
        if store not in STORES:
            raise ValueError(
                f"{self.root}: store must be one of {', '.join(STORES)}, got {store!r}"
            )
        if (store == "original") != (image_size is None):
            raise ValueError(f"{self.root}: image_size is required for store 'resized' and must "
                             f"be None for store 'original', got {image_size!r}")  # fmt: skip
        if (image_size is not None and image_size <= 0) or shard_size <= 0:
            raise ValueError(f"{self.root}: image_size and shard_size must be positive, got "
                             f"{image_size} and {shard_size}")  # fmt: skip
        try:
            params = json.loads(json.dumps(params))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{self.root}: params must be JSON-serialisable ({err})") from err
        self.store = store
        self.image_size = None if image_size is None else int(image_size)
        self.shard_size, self.overwrite = shard_size, overwrite
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
        self._longest_side = 0  # original store: the manifest's image_size
        self._done = False

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._done:
            self.discard()

    def add(
        self,
        split: str,
        image: np.ndarray | bytes,
        label: int | Sequence[int],
        sample_id: str,
    ) -> None:
        """Append one image with its label (a class index; for a multi-label dataset the
        sequence of class indices present, possibly empty) to ``split``. The image is a uint8
        RGB array, (S, S, 3) for a resized store, or for an original store (H, W, 3) or its
        ``encode_png`` bytes."""
        self._check_open()
        if split not in SPLITS:
            raise ValueError(f"{sample_id}: split {split!r} is not one of {', '.join(SPLITS)}")
        stored, height_width = self._stored(image, sample_id)
        present = self._check_label(label, sample_id)
        if not sample_id or sample_id in self._ids:
            raise ValueError(f"{sample_id!r}: sample ids must be non-empty and unique")
        shard = self._open.get(split)
        if shard is None:
            index = sum(1 for _, s, _ in self._closed if s == split)
            path = self.staging / f"{split}-{index:05d}.h5"
            shard = self._open[split] = _OpenShard(path, self.shard_size, self.image_size)
        shard.images[len(shard.labels)] = stored
        if shard.sizes is not None:
            shard.sizes.append(height_width)
            self._longest_side = max(self._longest_side, *height_width)
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

    def _stored(self, image: np.ndarray | bytes, sample_id: str) -> tuple[object, tuple[int, int]]:
        """What goes into ``images`` for this store, and the image's (H, W)."""
        if self.image_size is None:
            data = image if isinstance(image, bytes) else encode_png(image, sample_id)
            return np.frombuffer(data, dtype=np.uint8), png_shape(data, sample_id)
        size = self.image_size
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image)
        if got != f"uint8 {(size, size, 3)}":
            raise ValueError(f"{sample_id}: image must be uint8 ({size}, {size}, 3), got {got}; "
                             f"resize and convert to RGB before adding")  # fmt: skip
        return image, (size, size)

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
                path = self.staging / file
                _fsync(path)
                size = path.stat().st_size
                shards.append(ShardInfo(file, split, count, sha256_file(path), size))
            counts = {s: sum(i.count for i in shards if i.split == s) for s in SPLITS}
            image_size = self._longest_side if self.image_size is None else self.image_size
            raw = {**self._meta, "image_size": image_size, "store": self.store,
                   "splits": counts, "class_counts": self._class_counts,
                   "skipped": self._skipped, "shards": [asdict(s) for s in shards]}  # fmt: skip
            store.write_json(self.staging / MANIFEST_NAME, raw)
            self._publish()
        except BaseException:
            self.discard()
            raise
        self._done = True
        return manifest_from_json(self.root, raw)

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
