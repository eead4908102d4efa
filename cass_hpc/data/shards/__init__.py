"""The packed-dataset format: HDF5 shards plus a manifest — the only package that touches HDF5.

A packed dataset is a directory::

    ROOT/manifest.json            written last: a directory without it is not a dataset
    ROOT/train-00000.h5 ...       one file per ``shard_size`` images of a split
    ROOT/val-00000.h5 ...
    ROOT/test-00000.h5 ...
    ROOT/.verified.json           optional: shards already hashed (see ``checksums``)

Each shard holds ``images``, ``labels`` int64 (n,) (multi-label: (n, C) multi-hot) and ``ids``
UTF-8 strings (n,). How ``images`` is stored is the manifest's ``store``:

- ``resized`` (the paper's pipeline, App. F.2.2): uint8 (n, S, S, 3), S = ``image_size``, one
  image per chunk, uncompressed (the fastest layout for random access, PERF-NOTES);
- ``original``: each image at its own size as lossless PNG bytes in a variable-length uint8
  dataset (n,), with ``sizes`` int64 (n, 2) = (H, W); the reader decodes them.

The manifest records classes, counts, the options that produced the pack and a SHA-256 and byte
size per shard, so a truncated or corrupt copy fails at start-up, not hours into a job. Usage::

    with ShardWriter(root, name="demo", classes=["a", "b"], image_size=64, seed=0,
                     source="synthetic:shapes", synthetic=True, params={}) as writer:
        writer.add("train", image, label=0, sample_id="a/0001")
        manifest = writer.commit()
    image = ShardReader(read_manifest(root), "train").image(0)   # (H, W, 3) uint8 RGB

Modules: ``format`` (constants, Manifest, ShardError), ``codec`` (PNG bytes), ``checksums``
(SHA-256 and the verified marker), ``writer`` (atomic ShardWriter), ``reader`` (read_manifest,
ShardReader).
"""

from __future__ import annotations

from cass_hpc.data.shards.checksums import VERIFIED_NAME, sha256_file, verify_checksums
from cass_hpc.data.shards.codec import decode_png, encode_png, png_shape
from cass_hpc.data.shards.format import (
    FORMAT,
    MANIFEST_NAME,
    SPLITS,
    STORES,
    Manifest,
    ShardError,
    ShardInfo,
)
from cass_hpc.data.shards.reader import ShardReader, read_manifest
from cass_hpc.data.shards.writer import ShardWriter, remove_stale_staging

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "SPLITS",
    "STORES",
    "VERIFIED_NAME",
    "Manifest",
    "ShardError",
    "ShardInfo",
    "ShardReader",
    "ShardWriter",
    "decode_png",
    "encode_png",
    "png_shape",
    "read_manifest",
    "remove_stale_staging",
    "sha256_file",
    "verify_checksums",
]
