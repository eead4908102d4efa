"""Re-drawn train/val/test splits (``split_seed``): a stratified partition of every packed image,
deterministic per seed, recorded beside the run; ``split_seed=None`` is the packed split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_module

from cass_hpc.data.dataset import ShardDataset
from cass_hpc.data.resplit import (
    ResplitDataset,
    redraw,
    split_dataset,
    split_labels,
    write_split_file,
)
from cass_hpc.data.shards import ShardReader, ShardWriter, read_manifest


def _all_packed(manifest) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    return [
        (n, i) for n, s in enumerate(("train", "val", "test")) for i in range(manifest.splits[s])
    ]


def _members(drawn: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    return sorted((int(n), int(i)) for members in drawn.values() for n, i in members)


def _identity(image: np.ndarray) -> np.ndarray:
    return image


def test_a_redrawn_split_partitions_every_packed_image_with_the_packed_class_counts(
    tiny_dataset: Path,
) -> None:
    manifest = read_manifest(tiny_dataset)
    drawn = redraw(manifest, 1)
    assert _members(drawn) == _all_packed(manifest)  # each packed image in exactly one split
    for split in ("train", "val", "test"):
        counts = np.bincount(split_labels(manifest, split, 1), minlength=4).tolist()
        assert counts == list(manifest.class_counts[split].values()), split  # stratified


def test_a_redraw_is_deterministic_for_a_split_seed_and_differs_for_another(
    tiny_dataset: Path,
) -> None:
    manifest = read_manifest(tiny_dataset)
    first = ResplitDataset(manifest, "test", _identity, 1).ids
    assert ResplitDataset(read_manifest(tiny_dataset), "test", _identity, 1).ids == first
    assert ResplitDataset(manifest, "test", _identity, 2).ids != first
    assert first != ShardReader(manifest, "test").ids  # not the packed test split


def test_split_seed_none_is_the_packed_split_as_a_plain_shard_dataset(tiny_dataset: Path) -> None:
    manifest = read_manifest(tiny_dataset)
    data = split_dataset(manifest, "val", _identity, None, indices=[0, 2])
    assert type(data) is ShardDataset and data.indices.tolist() == [0, 2]
    np.testing.assert_array_equal(
        split_labels(manifest, "train"), ShardReader(manifest, "train").labels
    )


def test_a_redrawn_dataset_reads_its_members_images_and_labels_in_order(
    tiny_dataset: Path,
) -> None:
    manifest = read_manifest(tiny_dataset)
    data = split_dataset(manifest, "val", _identity, 3, indices=[1, 3])
    readers = [ShardReader(manifest, s) for s in ("train", "val", "test")]
    assert len(data) == 2
    for item, member in enumerate(redraw(manifest, 3)["val"][[1, 3]]):
        reader, index = readers[member[0]], int(member[1])
        image, label = data[item]
        np.testing.assert_array_equal(image, reader.image(index))
        assert label == data.labels[item] == reader.labels[index]
        assert data.ids[item] == reader.ids[index]


def test_a_multilabel_pack_is_redrawn_with_every_label_in_every_split(tmp_path: Path) -> None:
    out = tmp_path / "ml"
    proc = run_module("preprocess", "synthetic", "shapes_multilabel", str(out),
                      "--per-class", "10", "--image-size", "32")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = read_manifest(out)
    drawn = redraw(manifest, 5)
    assert _members(drawn) == _all_packed(manifest)
    assert _members(drawn) == _members(redraw(manifest, 5))
    assert not all(np.array_equal(drawn[s], redraw(manifest, 6)[s]) for s in drawn)
    for split in drawn:
        labels = split_labels(manifest, split, 5)
        assert labels.shape == (len(drawn[split]), 4) and labels.any(axis=0).all(), split


def test_a_class_too_small_to_redraw_names_the_dataset(tmp_path: Path) -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    with ShardWriter(tmp_path / "few", name="few", classes=["a", "b"], image_size=8, seed=0,
                     source="test", synthetic=True, params={}) as writer:  # fmt: skip
        for i, (split, label) in enumerate([("train", 0), ("train", 0), ("val", 0), ("test", 0),
                                            ("train", 1), ("test", 1)]):  # fmt: skip
            writer.add(split, image, label=label, sample_id=f"x{i}")
        writer.commit()
    with pytest.raises(ValueError, match=r"dataset 'few' .*split_seed=0 .*class 1 has 2 images"):
        redraw(read_manifest(tmp_path / "few"), 0)


def test_the_split_file_lists_each_splits_ids_and_is_written_once_with_the_same_draw(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    manifest = read_manifest(tiny_dataset)
    assert write_split_file(manifest, None, tmp_path) is None  # the packed split: nothing to record
    path = write_split_file(manifest, 1, tmp_path / "store")
    assert path is not None and path.parent == tmp_path / "store" / "splits"
    assert path.name.startswith("tiny-") and path.name.endswith("-split1.json")
    record = json.loads(path.read_text())
    assert record["split_seed"] == 1 and record["dataset"] == "tiny"
    assert record["splits"]["test"]["ids"] == ResplitDataset(manifest, "test", _identity, 1).ids
    assert sum(s["count"] for s in record["splits"].values()) == sum(manifest.splits.values())
    before = path.read_bytes()
    assert write_split_file(manifest, 1, tmp_path / "store") == path and path.read_bytes() == before
    record["splits"]["test"]["ids"].reverse()  # a draw that this code does not make
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="records another draw for split_seed=1"):
        write_split_file(manifest, 1, tmp_path / "store")


@pytest.mark.parametrize("bad", [-1, True, "1"])
def test_a_bad_split_seed_is_refused_naming_it(tiny_dataset: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="split_seed must be null or an integer >= 0"):
        split_dataset(read_manifest(tiny_dataset), "train", _identity, bad)  # type: ignore[arg-type]
