"""Reader for the autoimmune (dermatomyositis) biopsy set (paper §4.3: 198 TIFF images, 5 classes,
multi-label, split 70/10/20).

Expected layout: SRC is the label CSV, with the header file,label and one line per image:

    file,label
    patient1/slide_001.tif,"[0, 3]"        label: the class indices present, 0..4
    patient1/slide_002.tif,[2]             (one index may also be written bare: 2)

Paths are relative to the CSV's folder, or absolute. Images are TIFF — 8- or 16-bit, 1, 3 or 4
channels, one or many pages — or any format the folder reader takes. --page picks the page of a
multi-page file (default 0); --channels picks 1 or 3 channels by index (e.g. 0,1,2; default: the
first 3 of a 4-channel file). 16-bit images are scaled linearly from their own min..max to 8 bits.
Classes are the label indices 0..4 (the paper's TFH-1, TFH-217, TFH-Like, B cells and others, in
the order the CSV uses); --classes a,b,c,d,e names them in the manifest and tables.

An empty label (empty cell or []), an index outside 0..4 or one listed twice, a file named twice,
or a class no image has is an error naming the CSV line. A missing or undecodable file stops the
pack unless --skip-bad records and skips it. Splits are drawn 70/10/20 by iterative multi-label
stratification (Sechidis et al. 2011: rarest label first), seeded by --seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from preprocess.readers import ReaderResult, ReaderSpec, Sample
from preprocess.readers.common import (
    add_decode_arguments,
    add_skip_bad,
    comma_list,
    decode_options,
    file_sha256,
    fingerprint,
    loader,
    recorded,
)
from preprocess.readers.table import Row, existing, image_file, read_rows

NUM_CLASSES = 5


def read_autoimmune(
    src: str | Path,
    *,
    classes: list[str] | None = None,
    skip_bad: bool = False,
    **decode: object,
) -> ReaderResult:
    """The images and multi-label labels the autoimmune CSV ``src`` lists (module docstring)."""
    csv_path = Path(src).expanduser().resolve()
    names = _class_names(classes)
    if not csv_path.is_file():
        raise ValueError(
            f"{csv_path}: not a file; SRC is the label CSV (file,label) — see "
            f"python -m preprocess autoimmune --help"
        )
    _, rows = read_rows(csv_path, ["file", "label"])
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[Path, int] = {}
    counts = [0] * NUM_CLASSES
    for row in rows:
        label = parse_indices(csv_path, row)
        found = image_file(csv_path, row, seen, skip_bad, skipped)
        if found is None:
            continue
        for index in label:
            counts[index] += 1
        samples.append(Sample(found[0], label, loader(found[1], **decode)))
    empty = [f"{i} ({names[i]})" if classes else str(i) for i, n in enumerate(counts) if n == 0]
    if empty:
        raise ValueError(
            f"{csv_path}: class {', '.join(empty)} is in no line's label; every one of the "
            f"{NUM_CLASSES} classes needs images — check the label column"
        )
    return ReaderResult(
        samples=samples,
        classes=names,
        source=str(csv_path),
        options={
            "csv_sha256": file_sha256(csv_path),
            "listing_sha256": fingerprint(csv_path.parent, existing(seen)),
            "skip_bad": skip_bad,
            **recorded(decode),
        },
        skipped=skipped,
        multilabel=True,
    )


def parse_indices(csv_path: Path, row: Row) -> tuple[int, ...]:
    """The sorted class indices of a label cell like ``[0, 3]``; ValueError naming the line."""
    text = row.cells["label"]
    where = f"{csv_path}: line {row.line}"
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    parts = [part.strip() for part in inner.split(",")] if inner.strip() else []
    if not parts:
        raise ValueError(
            f"{where}: empty label {text!r}; every image needs at least one class index "
            f'0..{NUM_CLASSES - 1}, written like "[0, 3]"'
        )
    if not all(part.isascii() and part.isdigit() for part in parts):
        raise ValueError(
            f'{where}: label {text!r} is not a list of class indices like "[0, 3]"; fix the cell'
        )
    indices = [int(part) for part in parts]
    unknown = [i for i in indices if i >= NUM_CLASSES]
    if unknown:
        raise ValueError(
            f"{where}: unknown label {unknown[0]} in {text!r}; classes are 0..{NUM_CLASSES - 1}"
        )
    repeated = sorted({i for i in indices if indices.count(i) > 1})
    if repeated:
        raise ValueError(f"{where}: label {text!r} lists class {repeated[0]} twice; list it once")
    return tuple(sorted(indices))


def _class_names(classes: list[str] | None) -> list[str]:
    if classes is None:
        return [str(i) for i in range(NUM_CLASSES)]
    if len(classes) != NUM_CLASSES or len(set(classes)) != NUM_CLASSES or not all(classes):
        raise ValueError(
            f"--classes {','.join(classes)!r}: give {NUM_CLASSES} distinct non-empty names, "
            f"comma-separated, in label-index order"
        )
    return list(classes)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", help="the label CSV (file,label)")
    parser.add_argument(
        "--classes",
        type=comma_list,
        default=None,
        help=f"{NUM_CLASSES} class names for the indices 0..{NUM_CLASSES - 1}, comma-separated "
        "(default: the indices)",
    )
    add_decode_arguments(parser)
    add_skip_bad(parser)


def _read(args: argparse.Namespace) -> ReaderResult:
    return read_autoimmune(
        args.src, classes=args.classes, skip_bad=args.skip_bad, **decode_options(args)
    )


READER = ReaderSpec(
    name="autoimmune",
    help='autoimmune biopsies: SRC = CSV file,label with labels like "[0, 3]" (TIFF images)',
    description=__doc__ or "",
    add_arguments=_add_arguments,
    read=_read,
)
