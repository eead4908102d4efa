"""Readers: the only code that knows a raw dataset's layout on disk.

A reader turns a source (a folder, a generator name, ...) into a list of ``Sample`` plus the class
list. It does not decode or resize: each sample carries a ``load`` callable that returns a PIL
image, called by ``preprocess.pack`` while it writes shards. Adding a reader means adding one
module that defines ``READER = ReaderSpec(...)`` and listing it in ``available_readers``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError


class ImageDecodeError(ValueError):
    """A raw image file cannot be opened or decoded."""


@dataclass(frozen=True)
class Sample:
    """One raw image: a stable id, its class index (multi-label: the tuple of class indices
    present), how to load it, and a fixed split or None."""

    sample_id: str
    label: int | tuple[int, ...]
    load: Callable[[], Image.Image]
    split: str | None = None


@dataclass(frozen=True)
class ReaderResult:
    """What a reader found: samples, class names (label order), files skipped, pack metadata."""

    samples: list[Sample]
    classes: list[str]
    source: str  # recorded in the manifest: a resolved path or "synthetic:<generator>"
    options: dict  # reader options (and a listing fingerprint) recorded in manifest params
    synthetic: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (sample id, reason)
    banner: str = ""  # a line the CLI prints before packing
    multilabel: bool = False  # labels are tuples of class indices (several per image)


@dataclass(frozen=True)
class ReaderSpec:
    """A reader as the CLI sees it: a subcommand with its help, options and read function."""

    name: str
    help: str  # one line for the top-level --help
    description: str  # the subcommand's --help text, including the expected layout
    add_arguments: Callable[[argparse.ArgumentParser], None]
    read: Callable[[argparse.Namespace], ReaderResult]
    src_is_path: bool = True  # False when SRC is a name (synthetic generators)


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image file; ImageDecodeError naming the path if that fails."""
    try:
        image = Image.open(path)
        image.load()  # PIL opens lazily: force the decode here so errors name this file
    except (
        OSError,
        UnidentifiedImageError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as err:
        raise ImageDecodeError(f"{path}: cannot decode image ({err})") from err
    return image


def available_readers() -> dict[str, ReaderSpec]:
    """All readers by name (imported here, not at module import, to avoid an import cycle)."""
    from preprocess.readers import folder, synthetic

    return {spec.name: spec for spec in (folder.READER, synthetic.READER)}
