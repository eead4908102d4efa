"""Reader for your own images listed in a CSV: file,label[,split], single- or multi-label.

Expected layout: SRC is a CSV with a header line; other columns (patient id, notes) are ignored.
Without a split column splits are drawn per IMAGE: when a patient has several images, give the
split column (one split per patient) so no patient is in both train and test.

    file,label,split
    scans/0001.dcm,pneumonia,train          file: relative to the CSV's folder, or absolute
    scans/0002.png,normal,test              label: the class name
    /data/extra/0003.tif,normal,val         split: train, val or test — on every line, or none

With --multilabel a label cell holds every class present, separated by ";" (e.g.
"effusion;pneumonia"); an image needs at least one. Classes are the sorted names found, or
--classes a,b,c fixes the list and its order (then a label not in it, or a listed class no image
has, is an error). Images: PNG, JPEG, BMP, TIFF (any depth and channels; --page, --channels),
DICOM (.dcm: rescale, window, MONOCHROME1 inverted) and anything else Pillow reads.

Without a split column (or with the column empty on every line) splits are drawn 70/10/20,
stratified (multi-label: iterative stratification, rarest label first) and seeded by --seed;
with it, the CSV's split is kept. An empty file or label cell, an unknown
label, a file named twice, a split that is not train/val/test, a split on some lines only, or
a class with under 3 images to split is an error naming the CSV line(s). A missing or
undecodable file stops the pack unless --skip-bad records and skips it.

A mistyped label makes a class of its own: without --classes, a class named one letter off
another (or the same but for case) and with at most a third of its images gets a warning
naming its lines; --classes a,b,c refuses every label not in the list.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from preprocess.readers import ReaderResult, ReaderSpec, Sample
from preprocess.readers.class_names import look_alikes
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

SEPARATOR = ";"  # between the class names of a multi-label cell
SPLIT_NAMES = ("train", "val", "test")


def read_csv(
    src: str | Path,
    *,
    multilabel: bool = False,
    classes: list[str] | None = None,
    skip_bad: bool = False,
    **decode: object,
) -> ReaderResult:
    """The images, labels and (optional) splits the CSV ``src`` lists (module docstring)."""
    csv_path = Path(src).expanduser().resolve()
    if not csv_path.is_file():
        raise ValueError(
            f"{csv_path}: not a file; SRC is a CSV with the columns file,label[,split] — see "
            f"python -m preprocess csv --help"
        )
    if classes is not None and (len(set(classes)) != len(classes) or not all(classes)):
        raise ValueError(f"--classes {','.join(classes)!r}: names must be non-empty and distinct")
    _, rows = read_rows(csv_path, ["file", "label"], ["split"])
    labels = [_label_names(csv_path, row, multilabel, classes) for row in rows]
    splits = _splits(csv_path, rows)
    names = list(classes) if classes is not None else sorted({n for ls in labels for n in ls})
    if len(names) < 2:
        raise ValueError(
            f"{csv_path}: found {len(names)} class ({', '.join(names)}); classification needs "
            f"at least 2"
        )
    index = {name: i for i, name in enumerate(names)}
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[Path, int] = {}
    lines: dict[str, list[int]] = {name: [] for name in names}  # class → lines of its images
    for row, row_labels, split in zip(rows, labels, splits, strict=True):
        found = image_file(csv_path, row, seen, skip_bad, skipped)
        if found is None:
            continue
        for name in row_labels:
            lines[name].append(row.line)
        label = tuple(sorted(index[n] for n in row_labels)) if multilabel else index[row_labels[0]]
        samples.append(Sample(found[0], label, loader(found[1], **decode), split))
    empty = [name for name, found_on in lines.items() if not found_on]
    if empty and classes is None:  # every file of the class was missing (--skip-bad)
        raise ValueError(
            f"{csv_path}: class {', '.join(empty)} has no image left (its files are missing); "
            f"add them, or remove the class's lines"
        )
    if empty:
        raise ValueError(
            f"{csv_path}: class {', '.join(empty)} (from --classes) has no image; add images "
            f"or leave it out of --classes"
        )
    if not multilabel and splits[0] is None:
        _check_drawable(csv_path, lines, typo_hint=classes is None)
    warnings = [] if classes is not None else _look_alike_warnings(csv_path, lines)
    return ReaderResult(
        samples=samples,
        classes=names,
        source=str(csv_path),
        options={
            "multilabel": multilabel,
            "csv_sha256": file_sha256(csv_path),
            "listing_sha256": fingerprint(csv_path.parent, existing(seen)),
            "skip_bad": skip_bad,
            **recorded(decode),
        },
        skipped=skipped,
        banner="\n".join(warnings),
        multilabel=multilabel,
    )


def _on_lines(numbers: list[int], shown: int = 5) -> str:
    """``line 7`` / ``lines 7, 9`` / ``lines 7, 9, 12, 15, 20, … (8 lines)``."""
    listed = ", ".join(str(n) for n in numbers[:shown])
    more = f", … ({len(numbers)} lines)" if len(numbers) > shown else ""
    return f"line{'s' if len(numbers) > 1 else ''} {listed}{more}"


def _check_drawable(csv_path: Path, lines: dict[str, list[int]], typo_hint: bool) -> None:
    """Refuse a class too small for the drawn 70/10/20 split (one image per split at least),
    naming its CSV lines: a one-off class is most often a mistyped label."""
    for name, found_on in lines.items():
        if len(found_on) < len(SPLIT_NAMES):
            fix = (
                "a typo in a label makes a new class: fix the label (--classes a,b,c refuses "
                "unknown labels), add images, or give a split column"
                if typo_hint
                else "add images, leave the class out of --classes and the CSV, or give a split "
                "column"
            )
            raise ValueError(
                f"{csv_path}: class {name!r} has {len(found_on)} image(s) "
                f"({_on_lines(found_on)}) to split 70/10/20; it needs at least "
                f"{len(SPLIT_NAMES)} — {fix}"
            )


def _look_alike_warnings(csv_path: Path, lines: dict[str, list[int]]) -> list[str]:
    """One warning line per class named like a much larger one (a likely typo; see
    ``class_names.look_alikes``), naming its CSV lines."""
    counts = {name: len(found_on) for name, found_on in lines.items()}
    warnings = []
    for name, like in look_alikes(counts).items():
        others = ", ".join(f"{other!r} ({counts[other]} images)" for other in like[:3])
        warnings.append(
            f"warning: {csv_path}: class {name!r} has {counts[name]} image(s) "
            f"({_on_lines(lines[name])}) and is named like {others}; if it is a typo, fix "
            f"those lines (a mistyped label makes a new class) — pass --classes a,b,c to list "
            f"the classes, which refuses unknown labels"
        )
    return warnings


def _label_names(
    csv_path: Path, row: Row, multilabel: bool, classes: list[str] | None
) -> list[str]:
    """The class names of one label cell; ValueError naming the line."""
    text, where = row.cells["label"], f"{csv_path}: line {row.line}"
    if not text:
        raise ValueError(f"{where}: empty label; give the image's class or remove the line")
    if not multilabel and SEPARATOR in text:
        raise ValueError(
            f"{where}: label {text!r} holds {SEPARATOR!r}; pass --multilabel for several "
            f"classes per image"
        )
    names = [name.strip() for name in text.split(SEPARATOR)] if multilabel else [text]
    if not all(names):
        raise ValueError(f"{where}: label {text!r} has an empty class name between separators")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{where}: label {text!r} lists {repeated[0]!r} twice; list it once")
    unknown = [n for n in names if classes is not None and n not in classes]
    if unknown:
        raise ValueError(
            f"{where}: unknown label {unknown[0]!r}; --classes has {', '.join(classes or [])}"
        )
    return names


def _splits(csv_path: Path, rows: list[Row]) -> list[str | None]:
    """Each line's split, or all None when the CSV has none; ValueError naming the line."""
    values = [row.cells.get("split", "").lower() for row in rows]
    if not any(values):
        return [None] * len(rows)
    for row, value in zip(rows, values, strict=True):
        if not value:
            raise ValueError(
                f"{csv_path}: line {row.line}: empty split; fill the split column on every "
                f"line ({', '.join(SPLIT_NAMES)}) or leave it empty everywhere"
            )
        if value not in SPLIT_NAMES:
            raise ValueError(
                f"{csv_path}: line {row.line}: split {row.cells['split']!r} is not one of "
                f"{', '.join(SPLIT_NAMES)}"
            )
    return list(values)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", help="the CSV (file,label[,split])")
    parser.add_argument(
        "--multilabel",
        action="store_true",
        help=f"label cells list every class present, separated by {SEPARATOR!r}",
    )
    parser.add_argument(
        "--classes",
        type=comma_list,
        default=None,
        help="the class names, comma-separated, in label order (default: the sorted names found)",
    )
    add_decode_arguments(parser)
    add_skip_bad(parser)


def _read(args: argparse.Namespace) -> ReaderResult:
    return read_csv(
        args.src,
        multilabel=args.multilabel,
        classes=args.classes,
        skip_bad=args.skip_bad,
        **decode_options(args),
    )


READER = ReaderSpec(
    name="csv",
    help="your own data: SRC = CSV file,label[,split] (single- or multi-label; DICOM, TIFF, ...)",
    description=__doc__ or "",
    add_arguments=_add_arguments,
    read=_read,
)
