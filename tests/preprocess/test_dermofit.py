"""The dermofit reader: <CLASS>/<id>/<id>.png with masks beside, 10 classes, every bad tree."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from raw_fixtures import DERMOFIT_CLASSES, cli_error, dermofit_tree, jpeg_bytes, pack_cli

from cass_hpc.data.shards import read_manifest
from preprocess.readers.dermofit import read_dermofit

PACK = ["--image-size", "32", "--shard-size", "7"]


def _argv(src: Path, out: Path, *extra: str) -> list[str]:
    return ["dermofit", str(src), str(out), *PACK, *extra]


def test_dermofit_tree_packs_10_classes_and_skips_masks(tmp_path: Path, capsys) -> None:
    ids = dermofit_tree(tmp_path / "dermofit")
    out = pack_cli(_argv(tmp_path / "dermofit", tmp_path / "out"), capsys)
    assert "dermofit: 30 lesion images in 10 classes; 30 lesion masks (<id>mask.<ext>)" in out
    manifest = read_manifest(tmp_path / "out")
    assert list(manifest.classes) == list(DERMOFIT_CLASSES)
    assert manifest.splits == {"train": 10, "val": 10, "test": 10}
    assert all(
        manifest.class_counts[s] == dict.fromkeys(DERMOFIT_CLASSES, 1) for s in manifest.splits
    )
    assert manifest.params["masks_skipped"] == 30 and manifest.skipped == ()
    samples = read_dermofit(tmp_path / "dermofit").samples
    assert [s.sample_id.split("/")[1] for s in samples] == ids
    assert samples[0].sample_id == "AK/A000/A000.png" and "mask" not in str(samples)


def test_lowercase_class_folders_are_accepted(tmp_path: Path) -> None:
    dermofit_tree(tmp_path / "d", per_class=1)
    (tmp_path / "d" / "MEL").rename(tmp_path / "d" / "mel")
    result = read_dermofit(tmp_path / "d")
    assert result.classes[-1] == "MEL" and result.samples[-1].label == 9


def _stray_file(root: Path) -> str:
    (root / "BCC" / "B003" / "notes.txt").write_text("seen by Dr X")
    return r"BCC/B003/notes\.txt: unexpected file in lesion folder BCC/B003; expected only B003"


def _loose_image(root: Path) -> str:
    shutil.copy(root / "SK" / "S012" / "S012mask.png", root / "SK" / "loose.png")
    return r"SK/loose\.png: file outside a lesion folder; expected SK/<id>/<id>\.<ext>"


def _lesion_without_image(root: Path) -> str:
    next((root / "DF" / "D024").glob("D024.*")).unlink()
    return r"DF/D024: lesion folder has no image D024\.<ext>; add the image, remove the folder"


def _two_images(root: Path) -> str:
    Image.new("RGB", (9, 9)).save(root / "ML" / "M006" / "M006.bmp")
    return r"ML/M006: lesion M006 has 2 images \(M006\.bmp, M006\.(png|jpg)\); keep one"


def _same_lesion_twice(root: Path) -> str:
    shutil.copytree(root / "AK" / "A001", root / "BCC" / "A001")
    return r"BCC/A001: lesion id A001 is also under AK/; one lesion has one class"


def _empty_class(root: Path) -> str:
    shutil.rmtree(root / "PYO")
    (root / "PYO").mkdir()
    return r"PYO: class folder has no lesion images; Dermofit needs all 10 classes"


def _missing_class(root: Path) -> str:
    shutil.rmtree(root / "VASC")
    return r"no class folder VASC; Dermofit has the 10 classes AK BCC ML SCC SK IEC PYO VASC DF"


def _unknown_class(root: Path) -> str:
    (root / "NEV" / "N1").mkdir(parents=True)
    return r"NEV: not a Dermofit class folder; expected AK BCC ML SCC SK IEC PYO VASC DF MEL"


BAD_TREES = {
    "stray-file": (_stray_file, True),
    "image-outside-lesion-folder": (_loose_image, True),
    "lesion-without-image": (_lesion_without_image, True),
    "two-images-one-lesion": (_two_images, False),
    "lesion-under-two-classes": (_same_lesion_twice, False),
    "empty-class": (_empty_class, False),
    "missing-class": (_missing_class, False),
    "unknown-class": (_unknown_class, False),
}


@pytest.mark.parametrize("case", sorted(BAD_TREES))
def test_bad_tree_is_a_one_line_error_and_no_output(tmp_path: Path, capsys, case) -> None:
    break_tree, skippable = BAD_TREES[case]
    dermofit_tree(tmp_path / "d")
    message = break_tree(tmp_path / "d")
    error = cli_error(_argv(tmp_path / "d", tmp_path / "out"), capsys)
    assert re.search(message, error), error
    assert error.endswith("or pass --skip-bad") == skippable
    assert not (tmp_path / "out").exists()


def test_skip_bad_skips_and_counts_stray_files(tmp_path: Path, capsys) -> None:
    dermofit_tree(tmp_path / "d")
    (tmp_path / "d" / "DF" / "D099").mkdir()
    Image.new("RGB", (30, 20)).save(tmp_path / "d" / "DF" / "D099" / "D099.png")
    _stray_file(tmp_path / "d")
    _lesion_without_image(tmp_path / "d")  # DF keeps 3 lesions, enough for 70/10/20
    pack_cli(_argv(tmp_path / "d", tmp_path / "out", "--skip-bad"), capsys)
    manifest = read_manifest(tmp_path / "out")
    assert sum(manifest.splits.values()) == 30
    assert [s["id"] for s in manifest.skipped] == ["BCC/B003/notes.txt", "DF/D024"]


def test_truncated_lesion_image_fails_the_pack_or_is_skipped(tmp_path: Path, capsys) -> None:
    dermofit_tree(tmp_path / "d")
    next((tmp_path / "d" / "SCC" / "S010").glob("S010.*")).unlink()
    (tmp_path / "d" / "SCC" / "S010" / "S010.jpg").write_bytes(jpeg_bytes()[:250])
    error = cli_error(_argv(tmp_path / "d", tmp_path / "out"), capsys)
    assert "SCC/S010/S010.jpg: cannot decode image" in error and "--skip-bad" in error
    assert not (tmp_path / "out").exists()
    pack_cli(_argv(tmp_path / "d", tmp_path / "out", "--skip-bad"), capsys)
    assert [s["id"] for s in read_manifest(tmp_path / "out").skipped] == ["SCC/S010/S010.jpg"]
