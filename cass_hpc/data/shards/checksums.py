"""Shard checksums, and a marker that spares re-hashing shards that have not changed.

Hashing every shard in every job costs ~10 s per job on an 11 GB pack. After a shard hashes to
its manifest checksum, ``ROOT/.verified.json`` records the file's identity at that moment: size,
mtime and ctime (in ns) and inode. A later verification re-hashes only a shard whose identity
differs. Writing a file changes its ctime (which no tool can set back, unlike mtime), and a copy
or a replacement is a new inode, so a shard that was rewritten, truncated, copied or swapped is
hashed again. A shard changed less than ``_SETTLED_S`` before it was hashed is not recorded
(as git's "racily clean" index entries: file times are coarse, so a change right after the hash
could leave them equal). What the marker cannot see is silent corruption below the filesystem
(bit rot), which ``read_manifest(root, use_marker=False)`` catches. The marker is written
atomically (temporary name + rename) and only as a cache: if ROOT is read-only, or the marker
is damaged, verification simply hashes everything, as it did without one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

from cass_hpc import store
from cass_hpc.data.shards.format import REPACK_HINT, ShardError, ShardInfo

VERIFIED_NAME = ".verified.json"
_MARKER_VERSION = 1
_HASH_BLOCK_BYTES = 1 << 20
_SETTLED_S = 2.0  # record only shards whose last change is older than this when hashed


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, streamed in 1 MiB blocks so multi-GB shards never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _identity(path: Path, sha256: str) -> dict[str, int | str]:
    stat = path.stat()
    return {
        "sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns, "inode": stat.st_ino,
    }  # fmt: skip


def _read_marker(root: Path) -> dict[str, dict]:
    try:
        raw = json.loads((root / VERIFIED_NAME).read_text(encoding="utf-8"))
        return dict(raw["shards"]) if raw.get("version") == _MARKER_VERSION else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # no marker, or a damaged one: hash everything


def verify_checksums(root: Path, shards: Sequence[ShardInfo], *, use_marker: bool = True) -> None:
    """Check each shard's SHA-256 against the manifest; ShardError naming the first bad file.

    With ``use_marker``, shards recorded in ``ROOT/.verified.json`` with their current identity
    are not re-hashed, and newly hashed ones are recorded (best effort).
    """
    marker = _read_marker(root) if use_marker else {}
    verified: dict[str, dict] = {}
    for shard in shards:
        path = root / shard.file
        before = _identity(path, shard.sha256)
        hashed_at = time.time_ns()
        if marker.get(shard.file) == before:
            verified[shard.file] = before
            continue
        if (actual := sha256_file(path)) != shard.sha256:
            raise ShardError(f"{path}: checksum mismatch (expected {shard.sha256[:8]}…, got "
                             f"{actual[:8]}…) — the shard is corrupt or truncated; "
                             f"{REPACK_HINT}")  # fmt: skip
        settled = hashed_at - max(before["mtime_ns"], before["ctime_ns"]) > _SETTLED_S * 1e9
        if settled and _identity(path, shard.sha256) == before:  # and unchanged while hashed
            verified[shard.file] = before
    if use_marker and verified != marker:
        # A read-only ROOT (a shared dataset) just means hashing again next time.
        with contextlib.suppress(OSError):
            store.write_json(root / VERIFIED_NAME, {"version": _MARKER_VERSION, "shards": verified})
