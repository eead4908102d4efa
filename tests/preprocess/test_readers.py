"""Readers (folder layouts, synthetic shapes) and image preparation, packed into real shards."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cass_hpc.data.shards import ShardReader, read_manifest
from preprocess.__main__ import main
from preprocess.pack import pack, prepare_image
from preprocess.readers.folder import read_folder
from preprocess.readers.synthetic import SHAPE_CLASSES, read_synthetic

SIZE = 16


def _image(path: Path, mode: str, size: tuple[int, int], value: int) -> None:
    """Write a small real image file (grey, RGB or RGBA; PNG or JPEG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fill = {"L": value, "RGB": (value, 255 - value, 40), "RGBA": (value, 20, 200, 90)}[mode]
    Image.new(mode, size, fill).save(path)


def _class_tree(base: Path, counts: dict[str, int]) -> None:
    """One folder per class, mixing grey/RGBA PNGs and RGB JPEGs of different sizes."""
    for cls_index, (cls, count) in enumerate(counts.items()):
        for i in range(count):
            kind = i % 3
            suffix, mode = [(".png", "L"), (".PNG", "RGBA"), (".jpg", "RGB")][kind]
            _image(
                base / cls / f"img{i:03d}{suffix}",
                mode,
                (20 + 7 * i, 30 + 3 * cls_index),
                10 * i % 256,
            )


def _pack(result, out: Path, **options) -> object:
    return pack(
        result.samples,
        result.classes,
        out,
        image_size=SIZE,
        seed=0,
        source=result.source,
        synthetic=result.synthetic,
        params={"reader": "test", **result.options},
        skipped=result.skipped,
        **options,
    )


def test_flat_class_folders_pack_to_stratified_splits(tmp_path: Path) -> None:
    _class_tree(tmp_path / "src", {"nevus": 10, "melanoma": 20, "bcc": 5})
    (tmp_path / "src" / "README.txt").write_text("top-level notes are ignored")
    (tmp_path / "src" / "nevus" / ".DS_Store").write_bytes(b"\0")
    result = read_folder(tmp_path / "src", seed=0)
    assert result.classes == ["bcc", "melanoma", "nevus"]
    assert len(result.samples) == 35 and all(s.split is None for s in result.samples)
    manifest = _pack(result, tmp_path / "out")
    assert manifest.splits == {"train": 24, "val": 4, "test": 7}
    assert manifest.class_counts["test"] == {"bcc": 1, "melanoma": 4, "nevus": 2}
    reader = ShardReader(read_manifest(tmp_path / "out"), "train")
    image = reader.image(0)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    reader.close()


def test_training_testing_layout_keeps_testing_as_test_split(tmp_path: Path) -> None:
    counts = {"glioma": 16, "meningioma": 8, "notumor": 9, "pituitary": 8}
    _class_tree(tmp_path / "mri" / "Training", counts)
    _class_tree(tmp_path / "mri" / "Testing", {k: 3 for k in counts})
    result = read_folder(tmp_path / "mri", seed=0)
    assert result.classes == sorted(counts) and result.options["layout"] == "training-testing"
    manifest = _pack(result, tmp_path / "out")
    assert manifest.splits == {"train": 36, "val": 5, "test": 12}
    assert manifest.class_counts["val"] == {
        "glioma": 2,
        "meningioma": 1,
        "notumor": 1,
        "pituitary": 1,
    }
    test_ids = ShardReader(read_manifest(tmp_path / "out"), "test").ids
    assert len(test_ids) == 12 and all(i.startswith("Testing/") for i in test_ids)


def test_training_testing_class_mismatch_names_the_difference(tmp_path: Path) -> None:
    _class_tree(tmp_path / "mri" / "Training", {"glioma": 3, "pituitary": 3})
    _class_tree(tmp_path / "mri" / "Testing", {"glioma": 3, "notumour": 3})
    with pytest.raises(ValueError, match="only in Training: pituitary; only in Testing: notumour"):
        read_folder(tmp_path / "mri")


def test_train_val_test_folders_in_any_case_are_kept_as_the_split(tmp_path: Path) -> None:
    counts = {"benign": 6, "malignant": 5}
    _class_tree(tmp_path / "kaggle" / "train", counts)
    _class_tree(tmp_path / "kaggle" / "Valid", {k: 2 for k in counts})
    _class_tree(tmp_path / "kaggle" / "TEST", {k: 3 for k in counts})
    result = read_folder(tmp_path / "kaggle", seed=0)
    assert result.classes == ["benign", "malignant"]
    assert result.options["layout"] == "train-val-test"
    assert _pack(result, tmp_path / "out").splits == {"train": 11, "val": 4, "test": 6}


def test_lowercase_training_testing_is_a_split_not_two_classes(tmp_path: Path) -> None:
    _class_tree(tmp_path / "mri" / "training", {"glioma": 8, "notumor": 8})
    _class_tree(tmp_path / "mri" / "testing", {"glioma": 2, "notumor": 2})
    result = read_folder(tmp_path / "mri", seed=0)
    assert result.classes == ["glioma", "notumor"]
    assert result.options["layout"] == "training-testing"


def test_split_folders_beside_class_folders_are_refused(tmp_path: Path) -> None:
    _class_tree(tmp_path / "mixed" / "train", {"a": 3, "b": 3})
    _class_tree(tmp_path / "mixed", {"c": 3})
    with pytest.raises(ValueError, match="train/ look like split folders but c/ look like class"):
        read_folder(tmp_path / "mixed")
    _class_tree(tmp_path / "notest" / "train", {"a": 3, "b": 3})
    _class_tree(tmp_path / "notest" / "val", {"a": 3, "b": 3})
    with pytest.raises(ValueError, match="with a train and a test folder"):
        read_folder(tmp_path / "notest")


def test_non_image_file_is_an_error_unless_skipped(tmp_path: Path) -> None:
    _class_tree(tmp_path / "src", {"a": 4, "b": 4})
    (tmp_path / "src" / "a" / "labels.csv").write_text("x")
    with pytest.raises(ValueError, match=r"a/labels\.csv: not an image file.*--skip-bad"):
        read_folder(tmp_path / "src")
    result = read_folder(tmp_path / "src", skip_bad=True)
    manifest = _pack(result, tmp_path / "out")
    assert manifest.skipped[0]["id"] == "a/labels.csv"


def test_empty_class_folder_is_named(tmp_path: Path) -> None:
    _class_tree(tmp_path / "src", {"a": 4})
    (tmp_path / "src" / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: class folder has no images"):
        read_folder(tmp_path / "src")


def test_undecodable_image_is_named_or_skipped(tmp_path: Path) -> None:
    _class_tree(tmp_path / "src", {"a": 4, "b": 4})
    (tmp_path / "src" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    result = read_folder(tmp_path / "src")
    with pytest.raises(ValueError, match=r"b/broken\.png: cannot decode image"):
        _pack(result, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    manifest = _pack(result, tmp_path / "out", skip_bad=True)
    assert sum(manifest.splits.values()) == 8
    assert [s["id"] for s in manifest.skipped] == ["b/broken.png"]


def test_prepare_image_makes_rgb_drops_alpha_and_applies_exif_rotation() -> None:
    grey = prepare_image(Image.new("L", (5, 9), 77), SIZE)
    assert grey.shape == (SIZE, SIZE, 3) and np.all(grey == 77)
    rgba = prepare_image(Image.new("RGBA", (SIZE, SIZE), (10, 20, 30, 0)), SIZE)
    assert rgba[0, 0].tolist() == [10, 20, 30]
    deep = Image.fromarray(np.array([[0, 1000], [2000, 4000]], dtype=np.uint16))
    assert prepare_image(deep, 2)[..., 0].tolist() == [[0, 64], [128, 255]]
    assert prepare_image(Image.new("P", (3, 3), 5), SIZE).shape == (SIZE, SIZE, 3)


def test_prepare_image_applies_exif_orientation() -> None:
    # 4×2 stored: left half black, right half white; EXIF 6 = display rotated 90° clockwise,
    # so upright it is 2×4 with the white half at the bottom.
    stored = Image.new("RGB", (4, 2), (0, 0, 0))
    stored.paste((255, 255, 255), (2, 0, 4, 2))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "PNG", exif=exif)
    buffer.seek(0)
    upright = prepare_image(Image.open(buffer), 4)
    assert upright[0].max() < 128 and upright[-1].min() > 128


def test_synthetic_shapes_are_byte_identical_for_a_seed(tmp_path: Path) -> None:
    manifests = [
        _pack(read_synthetic("shapes", image_size=SIZE, seed=s, per_class=6), tmp_path / f"out{i}")
        for i, s in enumerate((3, 3, 4))
    ]
    assert manifests[0].synthetic and manifests[0].classes == SHAPE_CLASSES
    assert [s.sha256 for s in manifests[0].shards] == [s.sha256 for s in manifests[1].shards]
    readers = [ShardReader(m, "train") for m in manifests]
    first = np.stack([readers[0].image(i) for i in range(len(readers[0]))])
    again = np.stack([readers[1].image(i) for i in range(len(readers[1]))])
    other = np.stack([readers[2].image(i) for i in range(len(readers[2]))])
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    for reader in readers:
        reader.close()


def test_synthetic_cli_says_synthetic(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(
        ["synthetic", "shapes", str(tmp_path / "shapes"), "--per-class", "3", "--image-size", "8"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "SYNTHETIC data: 'shapes'" in out and "(not medical images)" in out
    assert read_manifest(tmp_path / "shapes").synthetic is True
