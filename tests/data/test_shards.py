"""The shard format: round trip, checksum verification, atomic writes, lazy handles."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cass_hpc.data.shards import (
    FORMAT,
    Manifest,
    ShardError,
    ShardReader,
    ShardWriter,
    read_manifest,
)

SIZE = 8
CLASSES = ("benign", "malignant", "other")


def _writer(root: Path, **overrides) -> ShardWriter:
    options = dict(
        name="tiny",
        classes=CLASSES,
        image_size=SIZE,
        seed=7,
        source="unit-test",
        synthetic=True,
        params={"reader": "test"},
        shard_size=3,
    )
    options.update(overrides)
    return ShardWriter(root, **options)


def _pack(root: Path, counts: dict[str, int] | None = None, **overrides) -> dict:
    """Write a small dataset; return what was written per split (images, labels, ids)."""
    counts = counts or {"train": 7, "val": 2, "test": 3}
    rng = np.random.default_rng(0)
    written: dict[str, dict[str, list]] = {}
    with _writer(root, **overrides) as writer:
        for split, count in counts.items():
            part = written.setdefault(split, {"images": [], "labels": [], "ids": []})
            for i in range(count):
                image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
                label, sample_id = i % len(CLASSES), f"{split}/é-{i}"
                writer.add(split, image, label, sample_id)
                part["images"].append(image)
                part["labels"].append(label)
                part["ids"].append(sample_id)
        writer.commit()
    return written


def _staging_dirs(root: Path) -> list[Path]:
    return sorted(root.parent.glob(f"{root.name}.partial-*")) + sorted(
        root.parent.glob(f"{root.name}.old-*")
    )


def test_round_trip_returns_identical_images_labels_and_ids(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    written = _pack(root)
    manifest = read_manifest(root, verify=True)
    assert manifest.splits == {"train": 7, "val": 2, "test": 3}
    assert manifest.classes == CLASSES and manifest.num_classes == 3
    assert manifest.class_counts["train"] == {"benign": 3, "malignant": 2, "other": 2}
    assert [s.file for s in manifest.shards_for("train")] == [
        "train-00000.h5",
        "train-00001.h5",
        "train-00002.h5",
    ]
    for shard in manifest.shards:
        assert shard.sha256 == hashlib.sha256((root / shard.file).read_bytes()).hexdigest()
    raw = (root / "manifest.json").read_text(encoding="utf-8")
    assert f'"format": "{FORMAT}"' in raw
    for split, part in written.items():
        reader = ShardReader(manifest, split)
        assert len(reader) == len(part["labels"])
        assert reader.labels.dtype == np.int64
        assert reader.labels.tolist() == part["labels"]
        assert reader.ids == part["ids"]
        for index, image in enumerate(part["images"]):
            got = reader.image(index)
            assert got.dtype == np.uint8 and np.array_equal(got, image)
        assert np.array_equal(reader.image(-1), part["images"][-1])
        with pytest.raises(IndexError):
            reader.image(len(reader))
        reader.close()


def test_shard_files_store_one_uncompressed_image_per_chunk(tmp_path: Path) -> None:
    import h5py

    _pack(tmp_path / "ds")
    with h5py.File(tmp_path / "ds" / "train-00000.h5", "r") as handle:
        assert handle["images"].chunks == (1, SIZE, SIZE, 3)
        assert handle["images"].compression is None
        assert handle["labels"].dtype == np.int64
        assert handle["ids"].asstr()[0] == "train/é-0"


def test_reader_opens_files_lazily_and_pickles_without_handles(tmp_path: Path) -> None:
    _pack(tmp_path / "ds")
    reader = ShardReader(read_manifest(tmp_path / "ds"), "train")
    assert reader._images == {}  # nothing open before the first image(): safe to fork
    first = reader.image(0)
    assert reader._images
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._images == {}
    assert np.array_equal(clone.image(0), first)
    reader.close()
    clone.close()


def test_reader_forked_after_opening_reopens_in_the_child(tmp_path: Path) -> None:
    _pack(tmp_path / "ds")
    reader = ShardReader(read_manifest(tmp_path / "ds"), "train")
    expected = reader.image(4)  # the parent now holds an open handle
    context = multiprocessing.get_context("fork")
    queue = context.SimpleQueue()

    def child() -> None:
        image = reader.image(4)
        queue.put((image.tobytes(), reader._pid == os.getpid()))

    process = context.Process(target=child)
    process.start()
    process.join(timeout=30)
    assert process.exitcode == 0
    assert queue.get() == (expected.tobytes(), True)
    reader.close()


def test_corrupted_shard_fails_verification_naming_file_and_checksum(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _pack(root)
    shard = root / "train-00001.h5"
    data = bytearray(shard.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError) as info:
        read_manifest(root)
    assert str(info.value).startswith(f"{shard}: checksum mismatch (expected ")
    assert str(info.value).endswith(
        "the shard is corrupt or truncated; re-pack the dataset "
        "(python -m preprocess <reader> SRC OUT --overwrite)"
    )
    read_manifest(root, verify=False)  # cheap open still works; verification is what catches it


def test_truncated_shard_fails_at_open_without_verification_naming_file_and_repack(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ds"
    _pack(root)
    shard = root / "val-00000.h5"
    full = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[: full // 2])
    for verify in (True, False):  # the recorded size catches it before any hashing
        with pytest.raises(ShardError) as info:
            read_manifest(root, verify=verify)
        message = str(info.value)
        assert message.startswith(f"{shard}: {full // 2} bytes, the manifest records {full}")
        assert "the shard is truncated; re-pack the dataset" in message
        assert "\n" not in message


def test_truncated_shard_of_a_manifest_without_sizes_fails_when_the_reader_opens_it(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ds"
    _pack(root)
    raw = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    for shard in raw["shards"]:
        del shard["size_bytes"]  # as written before sizes were recorded
    (root / "manifest.json").write_text(json.dumps(raw), encoding="utf-8")
    shard = root / "val-00000.h5"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    manifest = read_manifest(root, verify=False)
    assert manifest.shards_for("val")[0].size_bytes is None
    where = re.escape(str(shard))
    with pytest.raises(
        ShardError, match=rf"^{where}: cannot open shard .* truncated or corrupt; re-pack"
    ):
        ShardReader(manifest, "val")
    with pytest.raises(ShardError, match=rf"^{where}: checksum mismatch .* re-pack the dataset"):
        read_manifest(root)


def test_missing_manifest_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    with pytest.raises(ShardError, match=r"no manifest\.json — not a packed dataset"):
        read_manifest(tmp_path / "half")


def test_missing_shard_file_is_reported(tmp_path: Path) -> None:
    _pack(tmp_path / "ds")
    (tmp_path / "ds" / "test-00000.h5").unlink()
    with pytest.raises(ShardError, match=r"test-00000\.h5: shard listed in the manifest"):
        read_manifest(tmp_path / "ds", verify=False)


def test_exception_inside_writer_leaves_no_root_and_no_staging(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="boom"), _writer(root) as writer:
        writer.add("train", np.zeros((SIZE, SIZE, 3), np.uint8), 0, "a")
        assert _staging_dirs(root)
        raise RuntimeError("boom")
    assert not root.exists()
    assert _staging_dirs(root) == []


@pytest.mark.parametrize(
    ("split", "image", "label", "message"),
    [
        ("train", np.zeros((SIZE, SIZE), np.uint8), 0, "must be uint8"),
        ("train", np.zeros((SIZE, SIZE, 3), np.float32), 0, "must be uint8"),
        ("train", np.zeros((SIZE, SIZE, 3), np.uint8), 3, "outside 0..2"),
        ("holdout", np.zeros((SIZE, SIZE, 3), np.uint8), 0, "is not one of train, val, test"),
    ],
)
def test_add_rejects_bad_samples_naming_the_sample(
    tmp_path: Path, split: str, image: np.ndarray, label: int, message: str
) -> None:
    with _writer(tmp_path / "ds") as writer, pytest.raises(ValueError, match=message) as info:
        writer.add(split, image, label, "patient-42")
    assert "patient-42" in str(info.value)


def test_duplicate_sample_id_is_rejected(tmp_path: Path) -> None:
    with _writer(tmp_path / "ds") as writer:
        writer.add("train", np.zeros((SIZE, SIZE, 3), np.uint8), 0, "dup")
        with pytest.raises(ValueError, match="'dup'.*unique"):
            writer.add("val", np.zeros((SIZE, SIZE, 3), np.uint8), 0, "dup")


def test_existing_dataset_needs_overwrite_and_is_replaced_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _pack(root)
    with pytest.raises(ShardError, match="pass --overwrite"):
        _writer(root)
    _pack(root, {"train": 4, "val": 1, "test": 1}, overwrite=True)
    assert read_manifest(root, verify=False).splits == {"train": 4, "val": 1, "test": 1}
    assert sorted(p.name for p in root.iterdir()) == [
        "manifest.json",
        "test-00000.h5",
        "train-00000.h5",
        "train-00001.h5",
        "val-00000.h5",
    ]
    assert _staging_dirs(root) == []


def test_refuses_to_replace_a_directory_that_is_not_a_dataset(tmp_path: Path) -> None:
    root = tmp_path / "precious"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(ShardError, match="not a packed dataset"):
        _writer(root, overwrite=True)
    assert (root / "notes.txt").exists()


def test_stale_staging_of_dead_process_is_removed_live_one_refused(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f"ds.partial-{int(dead.stdout)}"
    stale.mkdir()
    (stale / "train-00000.h5").write_bytes(b"half written")
    _pack(root)
    assert not stale.exists()
    live = tmp_path / f"ds.partial-{os.getppid()}"
    live.mkdir()
    with pytest.raises(ShardError, match=f"another pack \\(pid {os.getppid()}\\)"):
        _writer(root, overwrite=True)


def test_shards_for_unknown_split_names_the_present_ones(tmp_path: Path) -> None:
    _pack(tmp_path / "ds")
    manifest: Manifest = read_manifest(tmp_path / "ds")
    with pytest.raises(ValueError, match="unknown split 'valid'.*train, val, test"):
        manifest.shards_for("valid")
