"""Reader for the Dermofit Image Library (paper §4.3: 1,300 images, 10 classes, split 70/10/20).

Expected layout (the release, unzipped; one folder per lesion):

    SRC/<CLASS>/<id>/<id>.png          the lesion photograph (any image format; sizes vary,
                                       205×205 … 1020×1020 — every size is accepted)
    SRC/<CLASS>/<id>/<id>mask.png      its binary lesion mask: NOT an image to classify; masks
                                       are skipped on purpose, counted, and the count is printed

<CLASS> is one of the 10 classes, in this label order: AK BCC ML SCC SK IEC PYO VASC DF MEL
(folder names in any case). Every class folder must be present and hold at least one lesion; a
folder that is not one of the 10 classes is an error. Files directly in SRC (a README) are
ignored. Anything else — a file outside a lesion folder, a lesion folder without <id>.<ext>, an
unexpected file or sub-folder in a lesion folder — stops the pack unless --skip-bad records and
skips it. Two images for one lesion, or one lesion id under two classes, is always an error. The
source defines no split: splits are drawn 70/10/20, stratified and seeded (--seed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from preprocess.readers import ReaderResult, ReaderSpec, Sample
from preprocess.readers.common import (
    add_skip_bad,
    decode_options,
    fingerprint,
    is_image_name,
    loader,
    recorded,
    visible,
)

CLASSES = ("AK", "BCC", "ML", "SCC", "SK", "IEC", "PYO", "VASC", "DF", "MEL")
MASK_SUFFIX = "mask"  # <id>mask.png beside <id>.png


class _Listing:
    """What the walk found: lesion images per class, masks, and files skipped (--skip-bad)."""

    def __init__(self, src: Path, skip_bad: bool) -> None:
        self.src, self.skip_bad = src, skip_bad
        self.images: dict[str, list[Path]] = {name: [] for name in CLASSES}
        self.masks = 0
        self.skipped: list[tuple[str, str]] = []
        self.lesion_class: dict[str, str] = {}

    def bad(self, path: Path, reason: str, what_to_do: str) -> None:
        if not self.skip_bad:
            raise ValueError(f"{path}: {reason}; {what_to_do} or pass --skip-bad")
        self.skipped.append((path.relative_to(self.src).as_posix(), reason))


def read_dermofit(src: str | Path, *, skip_bad: bool = False, **decode: object) -> ReaderResult:
    """The lesion images of a Dermofit tree (see module docstring); masks are left out."""
    src = Path(src).expanduser().resolve()
    if not src.is_dir():
        raise ValueError(f"{src}: not a directory; see python -m preprocess dermofit --help")
    listing = _Listing(src, skip_bad)
    for cls, class_dir in _class_dirs(src).items():
        for entry in sorted(class_dir.iterdir()):
            if not visible(entry, class_dir):
                continue
            if entry.is_dir():
                _lesion(listing, cls, entry)
            else:
                listing.bad(
                    entry,
                    "file outside a lesion folder",
                    f"expected {cls}/<id>/<id>.<ext>; move it into its lesion folder, remove it,",
                )
        if not listing.images[cls]:
            raise ValueError(
                f"{class_dir}: class folder has no lesion images; Dermofit needs all 10 classes"
            )
    samples = [
        Sample(path.relative_to(src).as_posix(), label, loader(path, **decode))
        for label, cls in enumerate(CLASSES)
        for path in listing.images[cls]
    ]
    files = [path for cls in CLASSES for path in listing.images[cls]]
    return ReaderResult(
        samples=samples,
        classes=list(CLASSES),
        source=str(src),
        options={
            "masks_skipped": listing.masks,
            "listing_sha256": fingerprint(src, files),
            "skip_bad": skip_bad,
            **recorded(decode),
        },
        skipped=listing.skipped,
        banner=f"dermofit: {len(samples)} lesion images in {len(CLASSES)} classes; "
        f"{listing.masks} lesion masks (<id>{MASK_SUFFIX}.<ext>) skipped on purpose",
    )


def _class_dirs(src: Path) -> dict[str, Path]:
    """The 10 class folders by canonical class name, in label order."""
    found: dict[str, Path] = {}
    for path in sorted(src.iterdir()):
        if not path.is_dir() or not visible(path, src):
            continue
        name = path.name.upper()
        if name not in CLASSES:
            raise ValueError(
                f"{path}: not a Dermofit class folder; expected {' '.join(CLASSES)} — "
                f"remove or rename it"
            )
        if name in found:
            raise ValueError(f"{path}: class {name} also has the folder {found[name]}; merge them")
        found[name] = path
    missing = [cls for cls in CLASSES if cls not in found]
    if missing:
        raise ValueError(
            f"{src}: no class folder {', '.join(missing)}; Dermofit has the 10 classes "
            f"{' '.join(CLASSES)}, each in SRC/<CLASS>/<id>/<id>.png"
        )
    return {cls: found[cls] for cls in CLASSES}


def _lesion(listing: _Listing, cls: str, folder: Path) -> None:
    """Record the image of one lesion folder; its mask is counted, anything else is bad."""
    lesion = folder.name
    images = []
    for path in sorted(folder.iterdir()):
        if not visible(path, folder):
            continue
        stem = path.stem.casefold()
        if path.is_file() and is_image_name(path) and stem == lesion.casefold():
            images.append(path)
        elif path.is_file() and is_image_name(path) and stem == f"{lesion}{MASK_SUFFIX}".casefold():
            listing.masks += 1
        else:
            kind = "sub-folder" if path.is_dir() else "file"
            listing.bad(
                path,
                f"unexpected {kind} in lesion folder {cls}/{lesion}",
                f"expected only {lesion}.<ext> and {lesion}{MASK_SUFFIX}.<ext>; remove it",
            )
    if len(images) > 1:
        names = ", ".join(p.name for p in images)
        raise ValueError(f"{folder}: lesion {lesion} has {len(images)} images ({names}); keep one")
    if lesion in listing.lesion_class:
        other = listing.lesion_class[lesion]
        raise ValueError(
            f"{folder}: lesion id {lesion} is also under {other}/; one lesion has one class — "
            f"remove one of the two folders"
        )
    if not images:
        missing = f"lesion folder has no image {lesion}.<ext>"
        listing.bad(folder, missing, "add the image, remove the folder,")
        return
    listing.lesion_class[lesion] = cls
    listing.images[cls].append(images[0])


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", help="folder holding the 10 class folders")
    add_skip_bad(parser)


def _read(args: argparse.Namespace) -> ReaderResult:
    return read_dermofit(args.src, skip_bad=args.skip_bad, **decode_options(args))


READER = ReaderSpec(
    name="dermofit",
    help="Dermofit: SRC/<CLASS>/<id>/<id>.png (+ <id>mask.png, skipped), 10 classes",
    description=__doc__ or "",
    add_arguments=_add_arguments,
    read=_read,
)
