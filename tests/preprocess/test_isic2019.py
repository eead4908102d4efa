"""The isic2019 reader: the official ground-truth CSV + image folder, and every bad line."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
from raw_fixtures import (
    ISIC_CLASSES,
    cli_error,
    isic_line,
    isic_tree,
    jpeg_bytes,
    pack_cli,
)

from cass_hpc.data.shards import read_manifest
from preprocess.readers.isic2019 import read_isic2019

GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
PACK = ["--image-size", "32", "--shard-size", "5"]


def _argv(src: Path, out: Path, *extra: str) -> list[str]:
    return ["isic2019", str(src), str(out), *PACK, *extra]


def _rewrite(src: Path, change) -> None:
    """Apply ``change`` to the ground-truth CSV's list of lines."""
    path = src / GROUND_TRUTH
    lines = path.read_text().splitlines()
    change(lines)
    path.write_text("\n".join(lines) + "\n")


def test_isic_tree_packs_8_classes_split_70_10_20(tmp_path: Path, capsys) -> None:
    ids = isic_tree(tmp_path / "isic")
    out = pack_cli(_argv(tmp_path / "isic", tmp_path / "out"), capsys)
    assert "2 file(s) in ISIC_2019_Training_Input/ that the CSV does not name were ignored" in out
    manifest = read_manifest(tmp_path / "out")
    assert list(manifest.classes) == list(ISIC_CLASSES) and not manifest.multilabel
    assert manifest.splits == {"train": 8, "val": 8, "test": 8}  # 3 per class → 1 / 1 / 1
    assert all(manifest.class_counts[s] == dict.fromkeys(ISIC_CLASSES, 1) for s in manifest.splits)
    assert manifest.params["unlisted_files"] == 2 and manifest.skipped == ()
    assert manifest.params["reader"] == "isic2019"
    samples = read_isic2019(tmp_path / "isic").samples
    assert [s.sample_id for s in samples] == ids
    assert [s.label for s in samples[::3]] == list(range(8))
    assert pickle.loads(pickle.dumps(samples[0].load))().mode == "RGB"


def test_unk_column_may_be_empty_or_absent(tmp_path: Path) -> None:
    isic_tree(tmp_path / "isic")
    _rewrite(tmp_path / "isic", lambda lines: lines.__setitem__(slice(None), _unk_empty(lines)))
    assert len(read_isic2019(tmp_path / "isic").samples) == 24
    _rewrite(tmp_path / "isic", lambda lines: lines.__setitem__(slice(None), _unk_gone(lines)))
    assert len(read_isic2019(tmp_path / "isic").samples) == 24


def _unk_empty(lines: list[str]) -> list[str]:
    return [lines[0].replace(",UNK", ",unk")] + [x.rsplit(",", 1)[0] + "," for x in lines[1:]]


def _unk_gone(lines: list[str]) -> list[str]:
    return [x.rsplit(",", 1)[0] for x in lines]


def _set(index: int, line: str):
    return lambda lines: lines.__setitem__(index, line)


def _edit(index: int, old: str, new: str):
    return lambda lines: lines.__setitem__(index, lines[index].replace(old, new, 1))


def _drop_class(column: int):
    keep = lambda line: line.split(",")[1 + column] != "1.0"  # noqa: E731
    return lambda lines: lines.__setitem__(slice(None), [x for x in lines if keep(x)])


def _add_column(name: str):
    extra = lambda i, x: f"{x},{name if i == 0 else '0.0'}"  # noqa: E731
    return lambda lines: lines.__setitem__(slice(None), [extra(i, x) for i, x in enumerate(lines)])


BAD_LINES = {
    "unk-is-1": (
        _set(5, isic_line("ISIC_0000004", "NV", unk="1.0")),
        r"line 6 \(ISIC_0000004\): UNK is 1\.0; ISIC-2019 training labels have no UNK images "
        r"— remove the line or set UNK to 0",
    ),
    "no-positive": (
        _set(3, isic_line("ISIC_0000002")),
        r"line 4 \(ISIC_0000002\): no class is 1; exactly one of MEL NV BCC AK BKL DF VASC SCC "
        r"must be 1\.0",
    ),
    "two-positives": (
        _set(2, isic_line("ISIC_0000001", "MEL", "NV")),
        r"line 3 \(ISIC_0000001\): 2 classes are 1 \(MEL, NV\); exactly one",
    ),
    "duplicate-id": (
        lambda lines: lines.append(lines[1]),
        r"line 26: image ISIC_0000000 is already listed on line 2; remove the duplicate line",
    ),
    "missing-file": (
        _edit(2, "ISIC_0000001", "ISIC_9999999"),
        r"line 3: no file ISIC_2019_Training_Input/ISIC_9999999\.jpg — add the image, remove "
        r"the line, or pass --skip-bad",
    ),
    "class-without-images": (
        _drop_class(ISIC_CLASSES.index("DF")),
        r"no image of class DF; every ISIC-2019 class needs images",
    ),
    "unknown-column": (
        _add_column("XYZ"),
        r"column 'XYZ' is not an ISIC-2019 class",
    ),
    "not-one-hot": (
        _edit(4, "1.0", "0.5"),
        r"line 5 \(ISIC_0000003\): column NV is '0\.5'; expected 0\.0 or 1\.0",
    ),
    "empty-id": (
        _edit(4, "ISIC_0000003", ""),
        r"line 5: empty image id; fill in the image column or remove the line",
    ),
    "id-with-a-path": (
        _edit(3, "ISIC_0000002", "../ISIC_0000002"),
        r"line 4: image id '\.\./ISIC_0000002' is not a file name like ISIC_0000000",
    ),
    "short-header": (
        _set(0, "image,MEL,NV,BCC"),
        r"lacks column\(s\) AK, BKL, DF, VASC, SCC; the first line must name the columns",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_ground_truth_is_a_one_line_error_and_no_output(tmp_path: Path, capsys, case) -> None:
    change, message = BAD_LINES[case]
    isic_tree(tmp_path / "isic")
    _rewrite(tmp_path / "isic", change)
    error = cli_error(_argv(tmp_path / "isic", tmp_path / "out"), capsys)
    assert GROUND_TRUTH in error and re.search(message, error), error
    assert not (tmp_path / "out").exists()


def test_missing_file_is_skipped_and_counted_with_skip_bad(tmp_path: Path, capsys) -> None:
    isic_tree(tmp_path / "isic", per_class=4)
    (tmp_path / "isic" / "ISIC_2019_Training_Input" / "ISIC_0000005.jpg").unlink()
    pack_cli(_argv(tmp_path / "isic", tmp_path / "out", "--skip-bad"), capsys)
    manifest = read_manifest(tmp_path / "out")
    assert sum(manifest.splits.values()) == 31
    assert [s["id"] for s in manifest.skipped] == ["ISIC_0000005"]
    assert "no file ISIC_2019_Training_Input/ISIC_0000005.jpg" in manifest.skipped[0]["reason"]


def test_truncated_image_fails_the_pack_or_is_skipped(tmp_path: Path, capsys) -> None:
    isic_tree(tmp_path / "isic")
    cut = tmp_path / "isic" / "ISIC_2019_Training_Input" / "ISIC_0000010.jpg"
    cut.write_bytes(jpeg_bytes()[:200])
    error = cli_error(_argv(tmp_path / "isic", tmp_path / "out"), capsys)
    assert "ISIC_0000010.jpg: cannot decode image" in error and "--skip-bad" in error
    assert not (tmp_path / "out").exists()
    pack_cli(_argv(tmp_path / "isic", tmp_path / "out", "--skip-bad"), capsys)
    manifest = read_manifest(tmp_path / "out")
    assert sum(manifest.splits.values()) == 23
    assert [s["id"] for s in manifest.skipped] == ["ISIC_0000010"]


def test_missing_ground_truth_csv_says_what_src_must_hold(tmp_path: Path, capsys) -> None:
    (tmp_path / "isic" / "ISIC_2019_Training_Input").mkdir(parents=True)
    error = cli_error(_argv(tmp_path / "isic", tmp_path / "out"), capsys)
    assert f"{GROUND_TRUTH}: not found; SRC must hold {GROUND_TRUTH} and " in error
