"""Reader for ISIC-2019 (paper §4.3: 25,331 dermoscopy images, 8 classes, split 70/10/20).

Expected layout (the official training files, unzipped side by side):

    SRC/ISIC_2019_Training_GroundTruth.csv
    SRC/ISIC_2019_Training_Input/<image>.jpg
    SRC/ISIC_2019_Training_Metadata.csv          optional; IGNORED (age, sex, site are not used)

The ground-truth CSV has the header image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK and one line per
image with one-hot floats ("0.0" / "1.0"). Classes, in this order: MEL NV BCC AK BKL DF VASC SCC.
Every line must have exactly one of them at 1; UNK must be 0 or empty (the training set has no
UNK images; a line with UNK = 1 is rejected). The UNK column itself may be absent. Each line's
image is ISIC_2019_Training_Input/<image>.jpg; a line naming a missing file stops the pack
unless --skip-bad records and skips it. An image listed twice, a column that is not an ISIC-2019
class, or a class no line has is an error (every class must have images). Files in the image
folder that the CSV does not name (LICENSE.txt, ATTRIBUTION.txt, extra images) are ignored and
counted. The source defines no split: splits are drawn 70/10/20, stratified and seeded (--seed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from preprocess.readers import ReaderResult, ReaderSpec, Sample
from preprocess.readers.common import (
    add_skip_bad,
    decode_options,
    file_sha256,
    fingerprint,
    loader,
    recorded,
)
from preprocess.readers.table import Row, read_rows

CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
UNKNOWN = "UNK"
GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
IMAGE_FOLDER = "ISIC_2019_Training_Input"
IMAGE_SUFFIX = ".jpg"
_TRUE, _FALSE = 1.0, 0.0


def read_isic2019(src: str | Path, *, skip_bad: bool = False, **decode: object) -> ReaderResult:
    """The images and one-hot labels of an ISIC-2019 training download (module docstring)."""
    src = Path(src).expanduser().resolve()
    csv_path, image_dir = src / GROUND_TRUTH, src / IMAGE_FOLDER
    for needed in (csv_path, image_dir):
        if not needed.exists():
            raise ValueError(
                f"{needed}: not found; SRC must hold {GROUND_TRUTH} and {IMAGE_FOLDER}/ "
                f"(see python -m preprocess isic2019 --help)"
            )
    columns, rows = read_rows(csv_path, ["image", *CLASSES], [UNKNOWN])
    extra = [c for c in columns if c not in {"image", *CLASSES, UNKNOWN}]
    if extra:
        raise ValueError(
            f"{csv_path}: column {extra[0]!r} is not an ISIC-2019 class; expected "
            f"image,{','.join(CLASSES)},{UNKNOWN}"
        )
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    first_line: dict[str, int] = {}
    files: list[Path] = []
    counts = dict.fromkeys(CLASSES, 0)
    for row in rows:
        image_id, label = _parse_row(csv_path, row)
        if image_id in first_line:
            raise ValueError(
                f"{csv_path}: line {row.line}: image {image_id} is already listed on line "
                f"{first_line[image_id]}; remove the duplicate line"
            )
        first_line[image_id] = row.line
        path = image_dir / f"{image_id}{IMAGE_SUFFIX}"
        if not path.is_file():
            reason = f"line {row.line}: no file {IMAGE_FOLDER}/{path.name}"
            if not skip_bad:
                raise ValueError(
                    f"{csv_path}: {reason} — add the image, remove the line, or pass --skip-bad "
                    f"to leave it out"
                )
            skipped.append((image_id, reason))
            continue
        counts[CLASSES[label]] += 1
        files.append(path)
        samples.append(Sample(image_id, label, loader(path, **decode)))
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise ValueError(
            f"{csv_path}: no image of class {', '.join(empty)}; every ISIC-2019 class needs "
            f"images (an incomplete CSV or image folder?) — for a subset use the csv reader"
        )
    listed = {p.name for p in files}
    unlisted = sum(
        1 for p in image_dir.iterdir() if p.name not in listed and not p.name.startswith(".")
    )
    banner = (
        f"isic2019: {len(samples)} images; {unlisted} file(s) in {IMAGE_FOLDER}/ that the CSV "
        f"does not name were ignored"
        if unlisted
        else ""
    )
    return ReaderResult(
        samples=samples,
        classes=list(CLASSES),
        source=str(src),
        options={
            "csv_sha256": file_sha256(csv_path),
            "listing_sha256": fingerprint(src, files),
            "unlisted_files": unlisted,
            "skip_bad": skip_bad,
            **recorded(decode),
        },
        skipped=skipped,
        banner=banner,
    )


def _parse_row(csv_path: Path, row: Row) -> tuple[str, int]:
    """The image id and class index of one ground-truth line; ValueError naming the line."""
    image_id = row.cells["image"]
    where = f"{csv_path}: line {row.line}"
    if not image_id:
        raise ValueError(f"{where}: empty image id; fill in the image column or remove the line")
    if "/" in image_id or "\\" in image_id or image_id.startswith("."):
        raise ValueError(f"{where}: image id {image_id!r} is not a file name like ISIC_0000000")
    where = f"{where} ({image_id})"
    values = {name: _one_hot(where, name, row.cells[name]) for name in CLASSES}
    unknown = row.cells.get(UNKNOWN, "")
    if unknown and _one_hot(where, UNKNOWN, unknown) == _TRUE:
        raise ValueError(
            f"{where}: UNK is {unknown}; ISIC-2019 training labels have no UNK images — "
            f"remove the line or set UNK to 0"
        )
    positive = [name for name, value in values.items() if value == _TRUE]
    if len(positive) != 1:
        found = "no class is 1"
        if positive:
            found = f"{len(positive)} classes are 1 ({', '.join(positive)})"
        raise ValueError(f"{where}: {found}; exactly one of {' '.join(CLASSES)} must be 1.0")
    return image_id, CLASSES.index(positive[0])


def _one_hot(where: str, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value not in (_TRUE, _FALSE):
        shown = repr(text) if text else "empty"
        raise ValueError(f"{where}: column {column} is {shown}; expected 0.0 or 1.0")
    return value


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", metavar="SRC", help=f"folder holding {GROUND_TRUTH} and {IMAGE_FOLDER}/"
    )
    add_skip_bad(parser)


def _read(args: argparse.Namespace) -> ReaderResult:
    return read_isic2019(args.src, skip_bad=args.skip_bad, **decode_options(args))


READER = ReaderSpec(
    name="isic2019",
    help=f"ISIC-2019: SRC/{GROUND_TRUTH} (one-hot) + SRC/{IMAGE_FOLDER}/<image>.jpg",
    description=__doc__ or "",
    add_arguments=_add_arguments,
    read=_read,
)
