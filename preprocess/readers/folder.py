"""Reader for image folders: one sub-folder per class, or Kaggle's Training/Testing layout.

Two layouts are recognised:

    SRC/<class>/<image>               class-per-folder; splits drawn 70/10/20 (stratified, seeded)
    SRC/Training/<class>/<image>      brain-tumour MRI (Kaggle, Nickparvar): Testing is kept as
    SRC/Testing/<class>/<image>       the test split; validation is 1/8 of Training (≈ 10 % of all)

Classes are the sorted folder names. Images may sit anywhere below their class folder. Extensions
.png .jpg .jpeg .bmp .tif .tiff (any case) are images; hidden files and OS litter (Thumbs.db,
desktop.ini) are ignored; any other file is an error unless --skip-bad records and skips it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
from pathlib import Path

import numpy as np

from cass_hpc.data.splits import stratified_split
from preprocess.readers import ReaderResult, ReaderSpec, Sample, open_image

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
_IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini"})
_VAL_OF_TRAINING = 1 / 8  # 70/10 of the whole when Testing is ~20 %


def _visible(path: Path, base: Path) -> bool:
    parts = path.relative_to(base).parts
    return not any(p.startswith(".") for p in parts) and path.name.lower() not in _IGNORED_NAMES


def _class_dirs(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_class(
    class_dir: Path, skip_bad: bool, src: Path, skipped: list[tuple[str, str]]
) -> list[Path]:
    """Image files below ``class_dir`` in sorted order; other files raise or are skipped."""
    images = []
    for path in sorted(class_dir.rglob("*")):
        if not path.is_file() or not _visible(path, class_dir):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(path)
            continue
        reason = f"not an image file (extension {path.suffix or 'none'!r})"
        if not skip_bad:
            raise ValueError(
                f"{path}: {reason}; expected {', '.join(sorted(IMAGE_EXTENSIONS))}"
                f" — remove it or pass --skip-bad"
            )
        skipped.append((path.relative_to(src).as_posix(), reason))
    if not images:
        raise ValueError(
            f"{class_dir}: class folder has no images; add images or remove the folder"
        )
    return images


def _fingerprint(src: Path, files: list[Path]) -> str:
    """Hash of relative paths and sizes, so a changed source is not mistaken for 'up to date'."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(src).as_posix()}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def read_folder(src: str | Path, *, seed: int = 0, skip_bad: bool = False) -> ReaderResult:
    """List the images of a class-per-folder or Training/Testing tree (see module docstring)."""
    src = Path(src).expanduser().resolve()
    if not src.is_dir():
        raise ValueError(
            f"{src}: not a directory; SRC must be a folder with one sub-folder per "
            f"class (see python -m preprocess folder --help)"
        )
    skipped: list[tuple[str, str]] = []
    if (src / "Training").is_dir() and (src / "Testing").is_dir():
        layout = "training-testing"
        train_dirs, test_dirs = _class_dirs(src / "Training"), _class_dirs(src / "Testing")
        train_names, test_names = [d.name for d in train_dirs], [d.name for d in test_dirs]
        if train_names != test_names:
            only_train = sorted(set(train_names) - set(test_names)) or ["-"]
            only_test = sorted(set(test_names) - set(train_names)) or ["-"]
            raise ValueError(
                f"{src}: Training and Testing class folders differ (only in "
                f"Training: {', '.join(only_train)}; only in Testing: "
                f"{', '.join(only_test)}); make them match"
            )
        classes = train_names
        groups = [(train_dirs, None), (test_dirs, "test")]
    else:
        layout = "class-per-folder"
        for path in sorted(src.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
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
                Sample(
                    path.relative_to(src).as_posix(),
                    label,
                    functools.partial(open_image, path),
                    split,
                )
                for path in files
            )
    if layout == "training-testing":
        samples = _carve_validation(samples, classes, seed, src)
    return ReaderResult(
        samples=samples,
        classes=classes,
        source=str(src),
        options={
            "layout": layout,
            "skip_bad": skip_bad,
            "files": len(all_files),
            "listing_sha256": _fingerprint(src, all_files),
        },
        skipped=skipped,
    )


def _carve_validation(
    samples: list[Sample], classes: list[str], seed: int, src: Path
) -> list[Sample]:
    """Split the Training samples stratified into train (7/8) and val (1/8)."""
    training = [i for i, s in enumerate(samples) if s.split is None]
    labels = np.asarray([samples[i].label for i in training], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    for label, count in enumerate(counts.tolist()):
        if count < 2:
            raise ValueError(
                f"{src / 'Training' / classes[label]}: {count} image(s); carving a "
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
        help="folder with one sub-folder per class, or with Training/ and Testing/ class folders",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip non-image and undecodable files (listed in the manifest's "
        "'skipped') instead of stopping at the first one",
    )


def _read(args: argparse.Namespace) -> ReaderResult:
    return read_folder(args.src, seed=args.seed, skip_bad=args.skip_bad)


READER = ReaderSpec(
    name="folder",
    help="image folders: SRC/<class>/*.png, or SRC/Training|Testing/<class>/*.jpg",
    description=__doc__ or "",
    add_arguments=_add_arguments,
    read=_read,
)
