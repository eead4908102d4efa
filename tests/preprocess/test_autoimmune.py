"""The autoimmune reader: a file,label CSV with "[0, 3]" multi-labels over multi-page TIFFs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from raw_fixtures import autoimmune_labels, autoimmune_tree, cli_error, pack_cli

from cass_hpc.data.shards import read_manifest
from preprocess.readers.autoimmune import read_autoimmune

PACK = ["--image-size", "32", "--shard-size", "4"]


def _argv(csv: Path, out: Path, *extra: str) -> list[str]:
    return ["autoimmune", str(csv), str(out), *PACK, *extra]


def test_autoimmune_tiffs_pack_multilabel_from_the_chosen_page(tmp_path: Path, capsys) -> None:
    csv = autoimmune_tree(tmp_path / "raw")
    names = "TFH-1,TFH-217,TFH-Like,B cells,others"
    pack_cli(_argv(csv, tmp_path / "out", "--page", "1", "--classes", names), capsys)
    manifest = read_manifest(tmp_path / "out")
    assert manifest.multilabel and list(manifest.classes) == names.split(",")
    assert sum(manifest.splits.values()) == 15
    present = [sum(c in autoimmune_labels(i) for i in range(15)) for c in range(5)]
    totals = [sum(manifest.class_counts[s][n] for s in manifest.splits) for n in manifest.classes]
    assert totals == present
    assert manifest.params["page"] == 1 and manifest.params["reader"] == "autoimmune"
    samples = read_autoimmune(csv).samples
    assert samples[3].sample_id == "patient0/slide_003.tif" and samples[3].label == (0, 3)


def test_channels_that_a_file_lacks_fail_the_pack_or_are_skipped(tmp_path: Path, capsys) -> None:
    csv = autoimmune_tree(tmp_path / "raw")  # every third file has 1 channel
    argv = _argv(csv, tmp_path / "out", "--channels", "0,1,2")
    error = cli_error(argv, capsys)
    assert "slide_000.tif: has 1 channel(s) (0..0), so --channels 0,1,2 does not fit" in error
    assert error.endswith("or pass --skip-bad to leave it out") and not (tmp_path / "out").exists()
    pack_cli([*argv, "--skip-bad"], capsys)
    manifest = read_manifest(tmp_path / "out")
    assert len(manifest.skipped) == 5 and sum(manifest.splits.values()) == 10
    assert manifest.params["channels"] == [0, 1, 2]


def test_a_page_the_files_lack_names_the_file(tmp_path: Path, capsys) -> None:
    csv = autoimmune_tree(tmp_path / "raw")
    error = cli_error(_argv(csv, tmp_path / "out", "--page", "2"), capsys)
    assert "has 2 page(s), so --page 2 does not exist; choose 0..1" in error


def _line(number: int, text: str):
    def change(lines: list[str]) -> None:
        lines[number - 1] = text  # the header is line 1

    return change


BAD_CSV = {
    "empty-label": (_line(3, "patient1/slide_001.tif,"), r"line 3: empty label ''"),
    "empty-list": (_line(3, "patient1/slide_001.tif,[]"), r"line 3: empty label '\[\]'"),
    "unknown-label": (
        _line(4, 'patient2/slide_002.tif,"[0, 7]"'),
        r"line 4: unknown label 7 in '\[0, 7\]'; classes are 0\.\.4",
    ),
    "not-a-list": (
        _line(2, "patient0/slide_000.tif,[a]"),
        r"line 2: label '\[a\]' is not a list of class indices like \"\[0, 3\]\"",
    ),
    "repeated-index": (
        _line(2, 'patient0/slide_000.tif,"[1, 1]"'),
        r"line 2: label '\[1, 1\]' lists class 1 twice",
    ),
    "duplicate-file": (
        lambda lines: lines.append(lines[1].replace("patient0/", "./patient0/")),
        r"line 17 names ./patient0/slide_000\.tif, the file line 2 names; remove the duplicate",
    ),
    "missing-file": (
        _line(5, "patient0/nowhere.tif,[3]"),
        r"line 5 names patient0/nowhere\.tif, which does not exist .* or pass --skip-bad",
    ),
    "empty-file": (_line(6, ",[4]"), r"line 6: empty file cell; name the image or remove the line"),
    "class-without-images": (
        lambda lines: lines.__setitem__(slice(None), [x for x in lines if not x.endswith('4]"')]),
        r"class 4 is in no line's label; every one of the 5 classes needs images",
    ),
    "header": (_line(1, "path,labels"), r"lacks column\(s\) file, label"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_csv_line_is_a_one_line_error_and_no_output(tmp_path: Path, capsys, case) -> None:
    change, message = BAD_CSV[case]
    csv = autoimmune_tree(tmp_path / "raw")
    lines = csv.read_text().splitlines()
    change(lines)
    csv.write_text("\n".join(lines) + "\n")
    error = cli_error(_argv(csv, tmp_path / "out"), capsys)
    assert "labels.csv" in error and re.search(message, error), error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--classes", "a,b,c,d"], r"--classes 'a,b,c,d': give 5 distinct non-empty names"),
        (["--channels", "0,1"], r"argument --channels: '0,1': give 1 \(grey\) or 3 \(RGB\)"),
        (["--page", "-1"], r"argument --page: '-1': a page is a non-negative integer"),
    ],
)
def test_bad_options_are_named(tmp_path: Path, capsys, argv, message) -> None:
    csv = autoimmune_tree(tmp_path / "raw", count=5)
    try:
        error = cli_error(_argv(csv, tmp_path / "out", *argv), capsys)
    except SystemExit as exit_:  # argparse rejects the value itself: usage + one error line
        assert exit_.code == 2
        error = capsys.readouterr().err.splitlines()[-1]
    assert re.search(message, error), error
    assert not (tmp_path / "out").exists()
