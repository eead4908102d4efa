"""What the file-based readers share: which files are images, loaders, options, fingerprints."""

from __future__ import annotations

import argparse
import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from PIL import Image

from preprocess.readers.decode import DEFAULT_MAX_PIXELS, DICOM_SUFFIXES, open_image

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", *DICOM_SUFFIXES})
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini"})  # OS litter, never reported
SKIP_BAD_HELP = (
    "skip files that are missing, not images or undecodable (listed with the reason in the "
    "manifest's 'skipped') instead of stopping at the first one"
)


def is_image_name(path: Path) -> bool:
    """Whether ``path`` has one of the image extensions (any case)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def visible(path: Path, base: Path) -> bool:
    """False for hidden files/folders below ``base`` (``.DS_Store``, ``.git``) and OS litter."""
    parts = path.relative_to(base).parts
    return not any(p.startswith(".") for p in parts) and path.name.lower() not in IGNORED_NAMES


def not_an_image(path: Path, src: Path, skip_bad: bool, skipped: list[tuple[str, str]]) -> None:
    """A non-image file in an image tree: ValueError, or recorded in ``skipped`` (--skip-bad)."""
    reason = f"not an image file (extension {path.suffix or 'none'!r})"
    if not skip_bad:
        raise ValueError(
            f"{path}: {reason}; expected {', '.join(sorted(IMAGE_EXTENSIONS))}"
            f" — remove it or pass --skip-bad"
        )
    skipped.append((path.relative_to(src).as_posix(), reason))


def fingerprint(base: Path, files: Iterable[Path], *extra: str) -> str:
    """Hash of relative paths and sizes (and ``extra`` strings), so a changed source is not
    mistaken for 'up to date'."""
    digest = hashlib.sha256()
    for text in extra:
        digest.update(f"{text}\n".encode())
    for path in files:
        relative = path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)
        digest.update(f"{relative}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a (small) file's bytes, e.g. a label CSV."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def loader(
    path: Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    page: int = 0,
    channels: Sequence[int] | None = None,
) -> Callable[[], Image.Image]:
    """``Sample.load`` for ``path``: a picklable partial of ``open_image`` with its options."""
    options: dict = {"max_pixels": int(max_pixels)}
    if page:
        options["page"] = int(page)
    if channels is not None:
        options["channels"] = tuple(channels)
    return functools.partial(open_image, path, **options)


def decode_options(args: argparse.Namespace) -> dict:
    """The decoding options a command line asked for (``--max-pixels``, ``--page``,
    ``--channels``), as keyword arguments of ``loader`` and readers."""
    options: dict = {"max_pixels": int(getattr(args, "max_pixels", DEFAULT_MAX_PIXELS))}
    if getattr(args, "page", 0):
        options["page"] = args.page
    if getattr(args, "channels", None) is not None:
        options["channels"] = args.channels
    return options


def recorded(decode: dict) -> dict:
    """Decoding options as the manifest's params record them (JSON: channels as a list)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in decode.items()}


def comma_list(text: str) -> list[str]:
    """A comma-separated option value (``--classes a,b,c``) as a list of stripped names."""
    return [name.strip() for name in text.split(",")]


def _channels(text: str) -> tuple[int, ...]:
    try:
        channels = tuple(int(part) for part in text.split(","))
    except ValueError:
        channels = ()
    if len(channels) not in (1, 3) or min(channels) < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give 1 (grey) or 3 (RGB) non-negative channel indices, e.g. 0 or 0,1,2"
        )
    return channels


def _page(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: a page is a non-negative integer (0 = first)")
    return int(text)


def add_skip_bad(parser: argparse.ArgumentParser) -> None:
    """The ``--skip-bad`` flag every file-based reader has."""
    parser.add_argument("--skip-bad", action="store_true", help=SKIP_BAD_HELP)


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    """``--page`` and ``--channels``: which page and channels of a multi-page / multi-channel
    image (TIFF, multi-frame DICOM) to store."""
    parser.add_argument(
        "--page",
        type=_page,
        default=0,
        help="page of a multi-page TIFF (frame of a multi-frame DICOM) to store (default: 0)",
    )
    parser.add_argument(
        "--channels",
        type=_channels,
        default=None,
        help="channel indices to store, 1 (grey) or 3 (RGB), e.g. 0,1,2 or 2 (default: grey as "
        "grey, RGB as RGB, 4+ channels → the first 3)",
    )
