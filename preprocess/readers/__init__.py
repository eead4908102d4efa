"""Readers: the only code that knows a raw dataset's layout on disk.

A reader turns a source (a folder, a generator name, ...) into a list of ``Sample`` plus the class
list. It does not decode or resize: each sample carries a ``load`` callable that returns a PIL
image, called by ``preprocess.pack`` while it writes shards. Adding a reader means adding one
module that defines ``READER = ReaderSpec(...)`` and listing it in ``available_readers``.

Every reader loads through ``open_image`` (``preprocess.readers.decode``: one decoding policy for
all formats) with its options bound by ``functools.partial``, so a ``Sample.load`` stays picklable
and packing can decode in worker processes.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from preprocess.readers.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, open_image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageDecodeError",
    "ReaderResult",
    "ReaderSpec",
    "Sample",
    "available_readers",
    "open_image",
]


@dataclass(frozen=True)
class Sample:
    """One raw image: a stable id, its class index (multi-label: the tuple of class indices
    present), how to load it, and a fixed split or None."""

    sample_id: str
    label: int | tuple[int, ...]
    load: Callable[[], Image.Image]
    split: str | None = None

    @property
    def file(self) -> Path | None:
        """The file ``load`` reads (every file reader binds it to ``open_image``), else None."""
        load = self.load
        if isinstance(load, functools.partial) and load.func is open_image and load.args:
            return Path(load.args[0])
        return None


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


def available_readers() -> dict[str, ReaderSpec]:
    """All readers by name (imported here, not at module import, to avoid an import cycle)."""
    from preprocess.readers import (
        autoimmune,
        brain_mri,
        csvfile,
        dermofit,
        digits,
        elpv,
        folder,
        isic2019,
        radiogalaxy,
        synthetic,
    )

    modules = (
        isic2019, dermofit, brain_mri, autoimmune, folder, csvfile, synthetic, digits, elpv,
        radiogalaxy,
    )  # fmt: skip
    return {module.READER.name: module.READER for module in modules}
