"""Reader for image folders: one sub-folder per class, or class folders inside split folders.

Two layouts are recognised:

    SRC/<class>/<image>               class-per-folder; splits drawn 70/10/20 (stratified, seeded)
    SRC/<split>/<class>/<image>       the source's own split, kept: <split> is train|training,
                                      val|valid|validation, test|testing (any case); without a
                                      val folder, validation is 1/8 of train (≈ 10 % of all).
                                      The brain-tumour MRI set (Kaggle, Nickparvar) is
                                      Training/ + Testing/.

Classes are the sorted folder names (the same in every split folder). Images may sit anywhere
below their class folder. Extensions .png .jpg .jpeg .bmp .tif .tiff .dcm .dicom (any case) are
images: DICOM through pydicom (rescale, window, MONOCHROME1 inverted), TIFF of any depth and
channel count through tifffile, the rest through Pillow — all decoded to 8-bit RGB by one policy
(preprocess/readers/decode.py). Hidden files and OS litter (Thumbs.db, desktop.ini) are ignored,
and so are files directly in SRC that are not images (a README); any other non-image file is an
error unless --skip-bad records and skips it. A class folder without images is an error (remove
the folder or add images), and so is a tree that mixes split folders with class folders.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cass_hpc.data.splits import stratified_split
from preprocess.readers import ReaderResult, ReaderSpec, Sample
from preprocess.readers.common import (
    add_skip_bad,
    decode_options,
    fingerprint,
    is_image_name,
    loader,
    not_an_image,
    recorded,
    visible,
)

_VAL_OF_TRAINING = 1 / 8  # 70/10 of the whole when Testing is ~20 %
_SPLIT_NAMES = {
    "train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}  # fmt: skip
TRAINING_TESTING = "training-testing"


def _class_dirs(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_class(
    class_dir: Path, skip_bad: bool, src: Path, skipped: list[tuple[str, str]]
) -> list[Path]:
    """Image files below ``class_dir`` in sorted order; other files raise or are skipped."""
    images = []
    for path in sorted(class_dir.rglob("*")):
        if not path.is_file() or not visible(path, class_dir):
            continue
        if is_image_name(path):
            images.append(path)
        else:
            not_an_image(path, src, skip_bad, skipped)
    if not images:
        raise ValueError(
            f"{class_dir}: class folder has no images; add images or remove the folder"
        )
    return images


def read_folder(
    src: str | Path,
    *,
    seed: int = 0,
    skip_bad: bool = False,
    layout: str | None = None,
    **decode: object,
) -> ReaderResult:
    """List the images of a class-per-folder or Training/Testing tree (see module docstring).

    ``layout=TRAINING_TESTING`` insists on the Training/Testing tree; ``decode`` holds the
    decoding options bound into every ``Sample.load`` (``max_pixels``, ``page``, ``channels``).
    """
    src = Path(src).expanduser().resolve()
    if not src.is_dir():
        raise ValueError(
            f"{src}: not a directory; SRC must be a folder with one sub-folder per "
            f"class (see python -m preprocess folder --help)"
        )
    skipped: list[tuple[str, str]] = []
    splits = _split_folders(src)
    if layout == TRAINING_TESTING and not splits:
        raise ValueError(
            f"{src}: expected Training/<class>/ and Testing/<class>/ folders (the Kaggle "
            f"brain-tumour MRI layout); for one folder per class use the folder reader"
        )
    if splits:
        layout = TRAINING_TESTING if "val" not in splits else "train-val-test"
        dirs = {split: _class_dirs(folder) for split, folder in splits.items()}
        names = {split: [d.name for d in found] for split, found in dirs.items()}
        for split, found in names.items():
            if found != names["train"]:
                only_train = sorted(set(names["train"]) - set(found)) or ["-"]
                only_here = sorted(set(found) - set(names["train"])) or ["-"]
                raise ValueError(
                    f"{src}: class folders differ between {splits['train'].name} and "
                    f"{splits[split].name} (only in {splits['train'].name}: "
                    f"{', '.join(only_train)}; only in {splits[split].name}: "
                    f"{', '.join(only_here)}); make them match"
                )
        classes = names["train"]
        train = "train" if "val" in dirs else None  # None: val is carved from it below
        groups = [(dirs["train"], train)] + [(dirs[s], s) for s in ("val", "test") if s in dirs]
    else:
        layout = "class-per-folder"
        for path in sorted(src.iterdir()):
            if path.is_file() and is_image_name(path):
                raise ValueError(
                    f"{path}: image outside a class folder; move it into SRC/<class>/ or remove it"
                )
        class_dirs = _class_dirs(src)
        classes = [d.name for d in class_dirs]
        groups = [(class_dirs, None)]
    if len(classes) < 2:
        raise ValueError(
            f"{src}: found {len(classes)} class folder(s) ({', '.join(classes)}); "
            f"classification needs at least 2 — see python -m preprocess folder -h"
        )

    samples: list[Sample] = []
    all_files: list[Path] = []
    for dirs, split in groups:
        for label, class_dir in enumerate(dirs):
            files = _list_class(class_dir, skip_bad, src, skipped)
            all_files.extend(files)
            samples.extend(
                Sample(path.relative_to(src).as_posix(), label, loader(path, **decode), split)
                for path in files
            )
    if splits and "val" not in splits:
        samples = _carve_validation(samples, classes, seed, splits["train"])
    return ReaderResult(
        samples=samples,
        classes=classes,
        source=str(src),
        options={
            "layout": layout,
            "skip_bad": skip_bad,
            "files": len(all_files),
            "listing_sha256": fingerprint(src, all_files),
            **recorded(decode),
        },
        skipped=skipped,
    )


def _split_folders(src: Path) -> dict[str, Path]:
    """``{train, [val], test} -> folder`` when SRC's sub-folders are split folders, else {}."""
    found: dict[str, Path] = {}
    top = _class_dirs(src)
    for folder in top:
        split = _SPLIT_NAMES.get(folder.name.lower())
        if split in found:
            raise ValueError(
                f"{src}: both {found[split].name}/ and {folder.name}/ name the {split} split; "
                f"merge them"
            )
        if split:
            found[split] = folder
    if not found:
        return {}
    others = [f.name for f in top if f not in found.values()]
    if others or "train" not in found or "test" not in found:
        raise ValueError(
            f"{src}: {', '.join(f.name for f in found.values())}/ look like split folders"
            + (f" but {', '.join(others)}/ look like class folders" if others else "")
            + "; use SRC/<split>/<class>/ with a train and a test folder (val optional), "
            "or SRC/<class>/ throughout"
        )
    return found


def _carve_validation(
    samples: list[Sample], classes: list[str], seed: int, train_dir: Path
) -> list[Sample]:
    """Split the train-folder samples stratified into train (7/8) and val (1/8)."""
    training = [i for i, s in enumerate(samples) if s.split is None]
    labels = np.asarray([samples[i].label for i in training], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    for label, count in enumerate(counts.tolist()):
        if count < 2:
            raise ValueError(
                f"{train_dir / classes[label]}: {count} image(s); carving a "
                f"validation split needs at least 2 per class"
            )
    parts = stratified_split(labels, {"train": 1 - _VAL_OF_TRAINING, "val": _VAL_OF_TRAINING}, seed)
    split_of = {training[int(i)]: name for name, idx in parts.items() for i in idx}
    return [
        Sample(s.sample_id, s.label, s.load, split_of[i]) if s.split is None else s
        for i, s in enumerate(samples)
    ]


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src",
        metavar="SRC",
        help="folder with one sub-folder per class, or with train/ [val/] test/ (any case, "
        "also Training/ Testing/) each holding the class folders",
    )
    add_skip_bad(parser)


def _read(args: argparse.Namespace) -> ReaderResult:
    return read_folder(args.src, seed=args.seed, skip_bad=args.skip_bad, **decode_options(args))


READER = ReaderSpec(
    name="folder",
    help="image folders: SRC/<class>/*.png, or SRC/train|val|test/<class>/*.jpg",
    description=__doc__ or "",
    add_arguments=_add_arguments,
    read=_read,
)
