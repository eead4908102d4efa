"""The readers on the command line: every layout in --help, and the common --max-pixels guard."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from raw_fixtures import cli_error, pack_cli

from cass_hpc.data.shards import read_manifest
from preprocess.__main__ import main


@pytest.mark.parametrize(
    ("reader", "layout"),
    [
        ("isic2019", ["ISIC_2019_Training_GroundTruth.csv", "<image>.jpg", "UNK", "IGNORED"]),
        ("dermofit", ["SRC/<CLASS>/<id>/<id>.png", "<id>mask.png", "AK BCC ML SCC SK IEC PYO"]),
        ("brain_mri", ["SRC/Training/<class>/<image>.jpg", "SRC/Testing/<class>/<image>.jpg"]),
        ("autoimmune", ['"[0, 3]"', "--page", "--channels", "--classes", "16-bit"]),
        ("csv", ["file,label,split", "--multilabel", '";"', "DICOM (.dcm"]),
        ("folder", ["SRC/<class>/<image>", ".dcm", "--skip-bad"]),
    ],
)
def test_every_reader_help_shows_its_layout(reader: str, layout: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([reader, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for text in [*layout, "--max-pixels", "--skip-bad"]:
        assert text in out, text


def _tree(root: Path) -> None:
    for cls in ("a", "b"):
        for i in range(3):
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20 + 10 * i, 10), (40 * i, 90, 10)).save(root / cls / f"{i}.png")


def test_max_pixels_refuses_a_too_large_image_by_name(tmp_path: Path, capsys) -> None:
    _tree(tmp_path / "src")
    argv = ["folder", str(tmp_path / "src"), str(tmp_path / "out"), "--image-size", "8"]
    error = cli_error([*argv, "--max-pixels", "399"], capsys)
    assert (
        "a/2.png: 40×10 = 400 pixels is over --max-pixels 399 (decompression-bomb guard)" in error
    )
    assert "raise --max-pixels if the image is genuine" in error and not (tmp_path / "out").exists()
    pack_cli([*argv, "--max-pixels", "399", "--skip-bad"], capsys)
    manifest = read_manifest(tmp_path / "out")
    assert [s["id"] for s in manifest.skipped] == ["a/2.png", "b/2.png"]
    assert manifest.params["max_pixels"] == 399


def test_max_pixels_must_be_positive(tmp_path: Path, capsys) -> None:
    _tree(tmp_path / "src")
    argv = ["folder", str(tmp_path / "src"), str(tmp_path / "out"), "--max-pixels", "0"]
    assert "--max-pixels must be positive, got 0" in cli_error(argv, capsys)
