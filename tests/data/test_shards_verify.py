"""The verified marker: a shard hashed once is not re-hashed until it changes, and any change a
copy, a rewrite or a truncation makes is still caught."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from cass_hpc import store
from cass_hpc.data.shards import VERIFIED_NAME, ShardError, ShardWriter, read_manifest
from cass_hpc.data.shards import checksums as checksums_module


def _pack(root: Path) -> None:
    with ShardWriter(
        root, name="v", classes=("a", "b"), image_size=4, seed=0, source="t", synthetic=True,
        params={}, shard_size=2,
    ) as writer:  # fmt: skip
        for i in range(5):
            writer.add("train", np.full((4, 4, 3), i, np.uint8), i % 2, f"t{i}")
        writer.add("val", np.zeros((4, 4, 3), np.uint8), 0, "v0")
        writer.add("test", np.zeros((4, 4, 3), np.uint8), 1, "s0")
        writer.commit()


@pytest.fixture
def hashed(monkeypatch) -> list[str]:
    """The names of the files hashed by read_manifest, in order; shards count as settled at once
    (not 2 s after their last change), so a test need not wait."""
    monkeypatch.setattr(checksums_module, "_SETTLED_S", 0.0)
    calls: list[str] = []
    real = checksums_module.sha256_file

    def counting(path: Path) -> str:
        calls.append(path.name)
        return real(path)

    monkeypatch.setattr(checksums_module, "sha256_file", counting)
    return calls


def _flip_a_byte_keeping_size_and_mtime(path: Path) -> None:
    stat = path.stat()
    time.sleep(0.05)  # past the filesystem's coarse clock tick, so the ctime can move
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as cp -p / rsync -t would


def test_second_verification_hashes_nothing_and_a_fresh_pack_has_no_marker(
    tmp_path: Path, hashed: list[str]
) -> None:
    root = tmp_path / "ds"
    _pack(root)
    assert not (root / VERIFIED_NAME).exists()  # the first job checks the bytes on disk itself
    read_manifest(root)
    assert len(hashed) == 5
    marker = json.loads((root / VERIFIED_NAME).read_text(encoding="utf-8"))
    assert sorted(marker["shards"]) == sorted(hashed)
    hashed.clear()
    read_manifest(root)
    read_manifest(root, verify=True)
    assert hashed == []
    read_manifest(root, use_marker=False)  # the full check, on demand
    assert len(hashed) == 5


def test_a_shard_rewritten_in_place_with_its_mtime_restored_is_hashed_and_refused(
    tmp_path: Path, hashed: list[str]
) -> None:
    root = tmp_path / "ds"
    _pack(root)
    read_manifest(root)
    hashed.clear()
    _flip_a_byte_keeping_size_and_mtime(root / "train-00001.h5")  # its ctime still moves
    with pytest.raises(ShardError, match=r"train-00001\.h5: checksum mismatch .* re-pack"):
        read_manifest(root)
    assert "train-00001.h5" in hashed and "train-00000.h5" not in hashed


def test_a_shard_replaced_by_a_corrupt_copy_with_the_same_times_is_refused(
    tmp_path: Path, hashed: list[str]
) -> None:
    root = tmp_path / "ds"
    _pack(root)
    read_manifest(root)
    assert "val-00000.h5" in json.loads((root / VERIFIED_NAME).read_text())["shards"]
    shard = root / "val-00000.h5"
    copy = tmp_path / "copy.h5"
    shutil.copy2(shard, copy)
    _flip_a_byte_keeping_size_and_mtime(copy)
    os.replace(copy, shard)  # a new inode, the old size and mtime
    with pytest.raises(ShardError, match=r"val-00000\.h5: checksum mismatch"):
        read_manifest(root)


def test_a_copied_dataset_with_its_marker_is_verified_again(
    tmp_path: Path, hashed: list[str]
) -> None:
    _pack(tmp_path / "ds")
    read_manifest(tmp_path / "ds")
    shutil.copytree(tmp_path / "ds", tmp_path / "copy")  # marker included, times preserved
    hashed.clear()
    read_manifest(tmp_path / "copy")
    assert len(hashed) == 5


def test_damaged_marker_means_hashing_again_not_an_error(tmp_path: Path, hashed: list[str]) -> None:
    root = tmp_path / "ds"
    _pack(root)
    (root / VERIFIED_NAME).write_text("{ half a json", encoding="utf-8")
    read_manifest(root)
    assert len(hashed) == 5
    assert json.loads((root / VERIFIED_NAME).read_text(encoding="utf-8"))["version"] == 1


def test_unwritable_dataset_verifies_without_a_marker(
    tmp_path: Path, hashed: list[str], monkeypatch
) -> None:
    root = tmp_path / "ds"
    _pack(root)

    def read_only(path: Path, obj: object) -> None:
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(store, "write_json", read_only)
    read_manifest(root)
    read_manifest(root)
    assert len(hashed) == 10 and not (root / VERIFIED_NAME).exists()


def test_a_shard_changed_just_before_it_was_hashed_is_not_recorded(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _pack(root)  # just written: a change in the same clock tick could go unseen
    read_manifest(root)
    assert not (root / VERIFIED_NAME).exists()
