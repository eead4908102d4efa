"""Opening a packed dataset: ``read_manifest`` checks it is whole, ``ShardReader`` reads a split."""

from __future__ import annotations

import bisect
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cass_hpc.data.shards.checksums import verify_checksums
from cass_hpc.data.shards.codec import decode_png
from cass_hpc.data.shards.format import (
    MANIFEST_NAME,
    REPACK_HINT,
    Manifest,
    ShardError,
    manifest_from_json,
)


def read_manifest(root: str | Path, *, verify: bool = True, use_marker: bool = True) -> Manifest:
    """Load ``ROOT/manifest.json`` and check every shard exists with its recorded size.

    With ``verify`` each shard's SHA-256 is checked too, skipping shards that the marker
    ``ROOT/.verified.json`` says were verified and have not changed since (``use_marker=False``
    hashes every shard). Raises ShardError when ROOT is not a complete packed dataset, so a job
    fails at start-up with a clear message instead of hours later inside a DataLoader worker.
    """
    root = Path(root).expanduser().resolve()
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ShardError(
            f"{root}: no {MANIFEST_NAME} — not a packed dataset, or the pack was interrupted; "
            f"re-run python -m preprocess <reader> SRC {root}"
        )
    try:
        manifest = manifest_from_json(root, json.loads(path.read_text(encoding="utf-8")))
    except ShardError:
        raise
    except (UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ShardError(f"{path}: unreadable manifest ({err!r}); {REPACK_HINT}") from err
    for shard in manifest.shards:
        shard_path = root / shard.file
        if not shard_path.is_file():
            raise ShardError(f"{shard_path}: shard listed in the manifest is missing — the copy "
                             f"is incomplete; copy it again or {REPACK_HINT}")  # fmt: skip
        size = shard_path.stat().st_size
        if shard.size_bytes is not None and size != shard.size_bytes:
            state = "truncated" if size < shard.size_bytes else "changed since packing"
            raise ShardError(f"{shard_path}: {size} bytes, the manifest records "
                             f"{shard.size_bytes} — the shard is {state}; "
                             f"{REPACK_HINT}")  # fmt: skip
    if verify:
        verify_checksums(root, manifest.shards, use_marker=use_marker)
    return manifest


def _open_for_read(path: Path) -> h5py.File:
    # No HDF5 file locking: Lustre/NFS often lack flock, and shards are never written in place.
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as err:
        raise ShardError(f"{path}: cannot open shard ({err}) — the file is truncated or "
                         f"corrupt; {REPACK_HINT}") from err  # fmt: skip


def _is_png_bytes(dataset: h5py.Dataset) -> bool:
    base = h5py.check_vlen_dtype(dataset.dtype)
    return base is not None and np.dtype(base) == np.uint8


class ShardReader:
    """Random access to one split's images, as (H, W, 3) uint8 RGB arrays whatever the store.

    ``labels`` and ``ids`` are read once at construction (each shard opened, read and closed).
    Shard files for images are opened lazily on the first ``image()`` call in the current
    process, so DataLoader workers each open their own handles (an h5py handle must never cross
    a fork); pickling drops open handles, so the reader also works under spawn. Images of an
    ``original`` pack are PNG-decoded here, in the worker that loads them.
    """

    def __init__(self, manifest: Manifest, split: str) -> None:
        self.manifest, self.split = manifest, split
        self.paths = [manifest.root / s.file for s in manifest.shards_for(split)]
        self._starts = [0]
        self._encoded = manifest.store == "original"
        empty = (0, manifest.num_classes) if manifest.multilabel else (0,)
        labels, self.ids = [np.zeros(empty, dtype=np.int64)], []
        for shard, path in zip(manifest.shards_for(split), self.paths, strict=True):
            with _open_for_read(path) as handle:
                try:
                    labels.append(np.asarray(handle["labels"][...], dtype=np.int64))
                    self.ids.extend(handle["ids"].asstr()[...].tolist())
                    shape, encoded = handle["images"].shape, _is_png_bytes(handle["images"])
                except (KeyError, OSError) as err:
                    raise ShardError(f"{path}: unreadable shard ({err}); {REPACK_HINT}") from err
            size = manifest.image_size
            expected = (shard.count,) if self._encoded else (shard.count, size, size, 3)
            if len(labels[-1]) != shard.count or shape != expected or encoded != self._encoded:
                layout = "PNG bytes" if encoded else "arrays"
                raise ShardError(f"{path}: holds {shape} images ({layout}) and "
                                 f"{len(labels[-1])} labels, the manifest says {expected} "
                                 f"({manifest.store}); {REPACK_HINT}")  # fmt: skip
            self._starts.append(self._starts[-1] + shard.count)
        self.labels: np.ndarray = np.concatenate(labels)
        self._images: dict[int, h5py.Dataset] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return self._starts[-1]

    def image(self, index: int) -> np.ndarray:
        """The (H, W, 3) uint8 image at ``index`` of this split (negative indices count back);
        H = W = ``image_size`` for a resized pack, the image's own size for an original one."""
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
            stored = images[index - self._starts[shard]]
            return decode_png(stored.tobytes()) if self._encoded else stored
        except ShardError:
            raise
        except (OSError, KeyError, ValueError, SyntaxError) as err:
            raise ShardError(f"{self.paths[shard]}: cannot read image "
                             f"{index - self._starts[shard]} ({err}) — the shard is truncated "
                             f"or corrupt; {REPACK_HINT}") from err  # fmt: skip

    def close(self) -> None:
        """Close any open shard files (safe to call repeatedly)."""
        for images in self._images.values():
            with contextlib.suppress(Exception):
                images.file.close()
        self._images = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_images": {}}  # handles never travel to another process
