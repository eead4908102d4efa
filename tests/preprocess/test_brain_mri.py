"""The brain_mri reader (Kaggle Training/Testing) and the folder reader with DICOM and TIFF."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from raw_fixtures import (
    BRAIN_CLASSES,
    brain_mri_tree,
    cli_error,
    copy_dicom,
    mixed_image,
    pack_cli,
    write_tiff,
)

from cass_hpc.data.shards import ShardReader, read_manifest

PACK = ["--image-size", "32", "--shard-size", "6"]


def test_brain_mri_keeps_testing_and_carves_validation_from_training(tmp_path: Path, capsys):
    brain_mri_tree(tmp_path / "mri")
    pack_cli(["brain_mri", str(tmp_path / "mri"), str(tmp_path / "out"), *PACK], capsys)
    manifest = read_manifest(tmp_path / "out")
    assert list(manifest.classes) == list(BRAIN_CLASSES)
    assert manifest.splits == {"train": 12, "val": 4, "test": 8}  # Training 4 per class → 3 + 1
    assert manifest.class_counts["test"] == dict.fromkeys(BRAIN_CLASSES, 2)
    assert manifest.params["reader"] == "brain_mri"
    assert manifest.params["layout"] == "training-testing"
    test_ids = ShardReader(manifest, "test").ids
    assert sorted(test_ids) == sorted(
        p.relative_to(tmp_path / "mri").as_posix()
        for p in (tmp_path / "mri" / "Testing").rglob("*.*")
    )
    train_ids = ShardReader(manifest, "train").ids + ShardReader(manifest, "val").ids
    assert {"Training/glioma/Tr-gl_0000.dcm", "Training/glioma/Tr-gl_0001.tif"} <= set(train_ids)


def test_brain_mri_without_training_testing_says_so(tmp_path: Path, capsys) -> None:
    for cls in ("a", "b"):
        mixed_image(tmp_path / "flat" / cls / "x", 0)
    error = cli_error(["brain_mri", str(tmp_path / "flat"), str(tmp_path / "out")], capsys)
    assert "flat: expected Training/<class>/ and Testing/<class>/ folders" in error
    assert "use the folder reader" in error and not (tmp_path / "out").exists()


def _dicom_tree(root: Path) -> None:
    """Class-per-folder: x-ray (real chest CR, MONOCHROME1) vs other (CT, MR, US DICOM, TIFF,
    PNG), 4 images each."""
    for i, kind in enumerate(("chest_xray", "chest_xray", "chest_xray", "chest_xray")):
        copy_dicom(kind, root / "xray" / f"cr{i}.dcm")
    copy_dicom("ct", root / "other" / "ct.dcm")
    copy_dicom("mr", root / "other" / "mr.DCM")
    copy_dicom("ultrasound", root / "other" / "us.dcm")
    write_tiff(root / "other" / "stain.tiff", channels=3, pages=2)


def test_folder_reader_packs_dicom_and_tiff(tmp_path: Path, capsys) -> None:
    _dicom_tree(tmp_path / "src")
    pack_cli(["folder", str(tmp_path / "src"), str(tmp_path / "out"), *PACK], capsys)
    manifest = read_manifest(tmp_path / "out")
    assert list(manifest.classes) == ["other", "xray"]
    assert manifest.class_counts == {s: {"other": n, "xray": n} for s, n in zip(
        ("train", "val", "test"), (2, 1, 1), strict=True)}  # fmt: skip
    reader = ShardReader(manifest, "train")
    images = np.stack([reader.image(i) for i in range(len(reader))])
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8 and images.std() > 0


def test_empty_class_folder_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    brain_mri_tree(tmp_path / "mri")
    shutil.rmtree(tmp_path / "mri" / "Testing" / "pituitary")
    (tmp_path / "mri" / "Testing" / "pituitary").mkdir()
    error = cli_error(["brain_mri", str(tmp_path / "mri"), str(tmp_path / "out")], capsys)
    assert "Testing/pituitary: class folder has no images; add images or remove the folder" in error
    assert not (tmp_path / "out").exists()


def test_non_image_file_is_reported_or_skipped_and_counted(tmp_path: Path, capsys) -> None:
    brain_mri_tree(tmp_path / "mri")
    (tmp_path / "mri" / "Training" / "notumor" / "scan-notes.docx").write_bytes(b"PK\x03\x04")
    argv = ["brain_mri", str(tmp_path / "mri"), str(tmp_path / "out"), *PACK]
    error = cli_error(argv, capsys)
    assert "Training/notumor/scan-notes.docx: not an image file (extension '.docx')" in error
    assert "remove it or pass --skip-bad" in error and not (tmp_path / "out").exists()
    pack_cli([*argv, "--skip-bad"], capsys)
    manifest = read_manifest(tmp_path / "out")
    assert [s["id"] for s in manifest.skipped] == ["Training/notumor/scan-notes.docx"]
    assert sum(manifest.splits.values()) == 24


def test_undecodable_dicom_is_named_at_pack_time_or_skipped(tmp_path: Path, capsys) -> None:
    brain_mri_tree(tmp_path / "mri")
    bad = tmp_path / "mri" / "Testing" / "glioma" / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x00abc")
    argv = ["brain_mri", str(tmp_path / "mri"), str(tmp_path / "out"), *PACK]
    error = cli_error(argv, capsys)
    assert "Testing/glioma/broken.dcm: " in error and "--skip-bad" in error
    assert not (tmp_path / "out").exists()
    pack_cli([*argv, "--skip-bad"], capsys)
    assert [s["id"] for s in read_manifest(tmp_path / "out").skipped] == [
        "Testing/glioma/broken.dcm"
    ]
