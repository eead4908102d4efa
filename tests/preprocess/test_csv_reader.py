"""The csv reader for your own data: file,label[,split], single- and multi-label, DICOM inside."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from raw_fixtures import cli_error, copy_dicom, mixed_image, pack_cli, write_image, write_tiff

from cass_hpc.data.shards import ShardReader, read_manifest
from preprocess.readers.csvfile import read_csv

PACK = ["--image-size", "32", "--shard-size", "4"]


def _argv(csv: Path, out: Path, *extra: str) -> list[str]:
    return ["csv", str(csv), str(out), *PACK, *extra]


def _clinic(root: Path) -> Path:
    """12 images (real chest X-ray / CT / MR DICOM, 16-bit TIFF, mixed PNG/JPEG), one of them
    outside the CSV's folder by absolute path, listed with a fixed split and a notes column."""
    files = [
        copy_dicom("chest_xray", root / "scans" / "cr.dcm"),
        copy_dicom("ct", root / "scans" / "ct.dcm"),
        copy_dicom("mr", root / "scans" / "mr.dcm"),
    ]
    write_tiff(root / "scans" / "stain.tif", channels=3, pages=2)
    files.append(root / "scans" / "stain.tif")
    files += [mixed_image(root / "photos" / f"p{i}", i) for i in range(7)]
    files.append(mixed_image(root.parent / "elsewhere" / "far", 7))
    labels = ["pneumonia", "normal", "normal", "effusion"] * 3
    splits = ["train"] * 7 + ["val"] * 2 + ["test"] * 3
    lines = ["file,label,split,notes"]
    for i, (path, label, split) in enumerate(zip(files, labels, splits, strict=True)):
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        lines.append(f"{name},{label},{split},note {i}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"


def test_single_label_csv_keeps_its_split_and_reads_dicom(tmp_path: Path, capsys) -> None:
    csv = _clinic(tmp_path / "clinic")
    out = pack_cli(_argv(csv, tmp_path / "out"), capsys)
    assert "warning: no test image of pneumonia: test metrics cannot see it" in out
    manifest = read_manifest(tmp_path / "out")
    assert list(manifest.classes) == ["effusion", "normal", "pneumonia"]
    assert manifest.splits == {"train": 7, "val": 2, "test": 3}
    assert manifest.class_counts["test"] == {"effusion": 1, "normal": 2, "pneumonia": 0}
    assert not manifest.multilabel and manifest.params["reader"] == "csv"
    train_ids = ShardReader(manifest, "train").ids
    assert train_ids[:4] == ["scans/cr.dcm", "scans/ct.dcm", "scans/mr.dcm", "scans/stain.tif"]
    assert ShardReader(manifest, "test").ids[-1] == str(tmp_path / "elsewhere" / "far.jpg")


def test_multilabel_csv_draws_stratified_splits(tmp_path: Path, capsys) -> None:
    lines = ["file,label"]
    for i in range(18):
        labels = ["edema", "nodule", "effusion"][i % 3] + (";nodule" if i % 4 == 0 else "")
        if labels == "nodule;nodule":
            labels = "nodule"
        lines.append(f"{mixed_image(tmp_path / 'img' / f'x{i}', i).name},{labels}")
    (tmp_path / "img" / "labels.csv").write_text("\n".join(lines) + "\n")
    csv = tmp_path / "img" / "labels.csv"
    argv = _argv(csv, tmp_path / "out", "--multilabel", "--classes", "nodule,edema,effusion")
    pack_cli(argv, capsys)
    manifest = read_manifest(tmp_path / "out")
    assert manifest.multilabel and list(manifest.classes) == ["nodule", "edema", "effusion"]
    assert sum(manifest.splits.values()) == 18
    assert sum(manifest.class_counts[s]["nodule"] for s in manifest.splits) == 9
    assert read_csv(csv, multilabel=True).samples[0].label == (0, 2)  # edema;nodule, sorted names


def _replace(line: int, text: str):
    def change(lines: list[str]) -> None:
        lines[line - 1] = text  # the header is line 1

    return change


BAD_CSV = {
    "unknown-label": (
        ["--classes", "effusion,normal,pneumonia"],
        _replace(3, "scans/ct.dcm,fracture,train,x"),
        r"line 3: unknown label 'fracture'; --classes has effusion, normal, pneumonia",
    ),
    "empty-label": (
        [],
        _replace(4, "scans/mr.dcm,,train,x"),
        r"line 4: empty label; give the image's class or remove the line",
    ),
    "several-labels-without-multilabel": (
        [],
        _replace(2, "scans/cr.dcm,normal;effusion,train,x"),
        r"line 2: label 'normal;effusion' holds ';'; pass --multilabel",
    ),
    "same-file-twice": (
        [],
        lambda lines: lines.append("./scans/../scans/cr.dcm,normal,test,again"),
        r"line 14 names \./scans/\.\./scans/cr\.dcm, the file line 2 names; remove the duplicate",
    ),
    "missing-file": (
        [],
        _replace(5, "scans/gone.tif,effusion,train,x"),
        r"line 5 names scans/gone\.tif, which does not exist .* or pass --skip-bad",
    ),
    "split-on-some-lines-only": (
        [],
        _replace(6, "photos/p0.png,pneumonia,,x"),
        r"line 6: empty split; fill the split column on every line \(train, val, test\)",
    ),
    "unknown-split": (
        [],
        _replace(6, "photos/p0.png,pneumonia,holdout,x"),
        r"line 6: split 'holdout' is not one of train, val, test",
    ),
    "declared-class-without-images": (
        ["--classes", "effusion,normal,pneumonia,fracture"],
        lambda lines: None,
        r"class fracture \(from --classes\) has no image; add images or leave it out",
    ),
    "one-class": (
        [],
        lambda lines: lines.__setitem__(slice(1, None), [x for x in lines[1:] if ",normal," in x]),
        r"found 1 class \(normal\); classification needs at least 2",
    ),
    "semicolon-separated": (
        [],
        lambda lines: lines.__setitem__(slice(None), [x.replace(",", ";") for x in lines]),
        r"looks separated by ';' or tabs: save it comma-separated",
    ),
    "ragged-line": (
        [],
        _replace(7, "photos/p1.jpg,normal"),
        r"line 7 has 2 cells but the header has 4; quote cells that hold commas",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_csv_is_a_one_line_error_and_no_output(tmp_path: Path, capsys, case) -> None:
    options, change, message = BAD_CSV[case]
    csv = _clinic(tmp_path / "clinic")
    lines = csv.read_text().splitlines()
    change(lines)
    csv.write_text("\n".join(lines) + "\n")
    error = cli_error(_argv(csv, tmp_path / "out", *options), capsys)
    assert "labels.csv" in error and re.search(message, error), error
    assert not (tmp_path / "out").exists()


def test_missing_file_is_skipped_and_counted_with_skip_bad(tmp_path: Path, capsys) -> None:
    csv = _clinic(tmp_path / "clinic")
    (tmp_path / "clinic" / "photos" / "p1.jpg").unlink()
    pack_cli(_argv(csv, tmp_path / "out", "--skip-bad"), capsys)
    manifest = read_manifest(tmp_path / "out")
    assert manifest.splits == {"train": 6, "val": 2, "test": 3}
    assert manifest.skipped[0]["id"] == "photos/p1.jpg"
    assert "line 7 names photos/p1.jpg, which does not exist" in manifest.skipped[0]["reason"]


def test_src_that_is_not_a_csv_says_what_src_is(tmp_path: Path, capsys) -> None:
    (tmp_path / "folder").mkdir()
    error = cli_error(["csv", str(tmp_path / "folder"), str(tmp_path / "out")], capsys)
    assert "folder: not a file; SRC is a CSV with the columns file,label[,split]" in error


def _unsplit_csv(root: Path, labels: list[str]) -> Path:
    """A CSV without a split column: one tiny PNG per label, line i + 2 for labels[i]."""
    lines = ["file,label"]
    for i, label in enumerate(labels):
        lines.append(f"{write_image(root / f'{i}.png', 'L', (4, 4), i).name},{label}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"


def test_mistyped_label_too_rare_to_split_names_its_csv_line_and_the_typo(
    tmp_path: Path, capsys
) -> None:
    labels = ["cat_a"] * 4 + ["cat_b"] * 4
    labels[5] = "cat_x"  # CSV line 7
    csv = _unsplit_csv(tmp_path, labels)
    error = cli_error(_argv(csv, tmp_path / "out"), capsys)
    assert error == (
        f"error: {csv}: class 'cat_x' has 1 image(s) (line 7) to split 70/10/20; it needs at "
        f"least 3 — a typo in a label makes a new class: fix the label (--classes a,b,c "
        f"refuses unknown labels), add images, or give a split column"
    )
    assert not (tmp_path / "out").exists()


def test_listed_class_too_rare_to_split_names_its_lines_without_a_typo_hint(
    tmp_path: Path, capsys
) -> None:
    csv = _unsplit_csv(tmp_path, ["cat_a"] * 4 + ["cat_b"] * 2)
    error = cli_error(_argv(csv, tmp_path / "out", "--classes", "cat_a,cat_b"), capsys)
    assert "class 'cat_b' has 2 image(s) (lines 6, 7) to split 70/10/20" in error
    assert error.endswith(
        "— add images, leave the class out of --classes and the CSV, or give a split column"
    )


def test_label_one_letter_off_a_much_larger_class_is_warned_with_its_lines(tmp_path: Path) -> None:
    labels = ["cat_a"] * 9 + ["cat_b"] * 9 + ["cat_x"] * 3  # cat_x: CSV lines 20, 21, 22
    csv = _unsplit_csv(tmp_path, labels)
    result = read_csv(csv)
    assert result.classes == ["cat_a", "cat_b", "cat_x"]  # packed as asked: a warning only
    assert result.banner == (
        f"warning: {csv}: class 'cat_x' has 3 image(s) (lines 20, 21, 22) and is named like "
        f"'cat_a' (9 images), 'cat_b' (9 images); if it is a typo, fix those lines (a mistyped "
        f"label makes a new class) — pass --classes a,b,c to list the classes, which refuses "
        f"unknown labels"
    )
    assert read_csv(csv, classes=["cat_a", "cat_b", "cat_x"]).banner == ""  # listed: meant
    siblings = _unsplit_csv(tmp_path / "siblings", labels[:18] + ["cat_c"] * 4)
    assert read_csv(siblings).banner == ""  # 4 of 9 is not much smaller: no false alarm
