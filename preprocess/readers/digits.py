"""A REAL-image check task that ships in a package: the UCI handwritten digits inside scikit-learn.

``sklearn.datasets.load_digits()`` reads a file that scikit-learn installs with itself (no
download): 1,797 scans of handwritten digits 0–9 written by 43 people (Alpaydin & Kaynak, "Optical
Recognition of Handwritten Digits", UCI Machine Learning Repository, 1998), each an 8×8 grid of
counts 0–16 from 32×32 bitmaps, about 180 per class. They are real images, not drawn by us: the
variation between writers is what a representation has to learn. Not medical images.

We pack each as an 8-bit grey image (count·255/16), replicated to RGB, resized to --image-size by
the packer like any other source (at --image-size 64 it warns once that every scan was upscaled:
expected here). The task checks pretraining recipes on real data (docs/health.md); it is small
enough to run on 2 CPU cores at 64 px.
"""

from __future__ import annotations

import argparse
import functools

import numpy as np
from PIL import Image

from preprocess.readers import ReaderResult, ReaderSpec, Sample

SOURCES = ("sklearn",)
CLASSES = tuple(str(d) for d in range(10))


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 8, 8), labels) from scikit-learn's bundled copy."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is a dependency
        raise ValueError(
            "the digits task reads the copy inside scikit-learn: pip install scikit-learn"
        ) from err
    data = load_digits()
    images = np.rint(np.asarray(data.images) * (255.0 / 16.0)).astype(np.uint8)
    return images, np.asarray(data.target, dtype=np.int64)


def digit_image(index: int) -> Image.Image:
    """Scan ``index`` as an 8×8 RGB image (the packer resizes it)."""
    images, _ = _digits()
    return Image.fromarray(images[index], mode="L").convert("RGB")


def read_digits(source: str = "sklearn", *, limit: int | None = None) -> ReaderResult:
    """The samples of the digits task; ``limit`` keeps the first N per class (tests)."""
    if source not in SOURCES:
        raise ValueError(f"unknown digits source {source!r}; available: {', '.join(SOURCES)}")
    if limit is not None and limit < 3:
        raise ValueError(f"--per-class must be at least 3 (one image per split), got {limit}")
    images, labels = _digits()
    samples, seen = [], np.zeros(len(CLASSES), dtype=np.int64)
    for index, label in enumerate(labels.tolist()):
        if limit is not None and seen[label] >= limit:
            continue
        seen[label] += 1
        samples.append(Sample(f"digits/{index:04d}", label, functools.partial(digit_image, index)))
    import sklearn

    banner = (
        f"REAL images: {len(samples)} UCI handwritten digit scans (8×8, 10 classes) from the copy "
        f"inside scikit-learn {sklearn.__version__}; not medical images"
    )
    return ReaderResult(
        samples=samples,
        classes=list(CLASSES),
        source=f"package:scikit-learn/digits ({len(images)} images)",
        options={"source": source, "per_class": limit},
        banner=banner,
    )


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", metavar="SOURCE", choices=SOURCES, help="where the scans come from: sklearn"
    )
    parser.add_argument(
        "--per-class", type=int, default=None, help="keep the first N images of each class "
        "(default: all, about 180)",
    )  # fmt: skip


def _read(args: argparse.Namespace) -> ReaderResult:
    return read_digits(args.src, limit=args.per_class)


READER = ReaderSpec(
    name="digits",
    help="REAL handwritten digit scans shipped inside scikit-learn (1,797 images, 10 classes)",
    description=(__doc__ or "") + "\nLayout: SRC is the source name, e.g.\n"
    "    python -m preprocess digits sklearn data/digits --image-size 64\n",
    add_arguments=_add_arguments,
    read=_read,
    src_is_path=False,
)
