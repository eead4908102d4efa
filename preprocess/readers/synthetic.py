"""SYNTHETIC images for demos and tests — NOT medical images.

``shapes`` draws a small labelled set of 4 classes (disc, square, triangle, stripes) with PIL at
the target size, loosely like stained cells on a dark slide: one foreground object of random
position, size and rotation, its colour drawn from a hue range that leans towards its class but
overlaps the neighbouring classes (a stain-like cue), on a smooth dark background with a few small
blobs, then blurred and noised. It exists so the whole pipeline (pack → pretrain → fine-tune →
collect) can run without downloading a dataset: small nets trained from scratch learn it well above
chance in a few epochs, yet overlapping hues, faint objects and blobs keep it from being perfect.
Every image is a pure function of (seed, class, index, image size), so the same seed gives
byte-identical images.
"""

from __future__ import annotations

import argparse
import colorsys
import functools
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from preprocess.readers import ReaderResult, ReaderSpec, Sample

SHAPE_CLASSES = ("disc", "square", "triangle", "stripes")
GENERATORS = ("shapes", "shapes_multilabel")
SHAPES_VERSION = 2  # bump when drawing changes, so an old pack is not taken as "up to date"


def _rotated(points: np.ndarray, angle: float, center: tuple[float, float]) -> list[tuple]:
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.asarray([[cos, -sin], [sin, cos]])
    moved = points @ rotation.T + np.asarray(center)
    return [tuple(p) for p in moved.tolist()]


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random colour field (float, 0..255) and its base colour."""
    grid = int(rng.integers(3, 8))
    coarse = rng.uniform(0, 255, size=(grid, grid, 3)).astype(np.uint8)
    field = np.asarray(
        Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32
    )
    base = rng.uniform(10, 80, size=3).astype(np.float32)
    mix = float(rng.uniform(0.05, 0.25))  # how strongly the texture shows through
    return base * (1 - mix) + field * mix, base


def _blobs(rng: np.random.Generator, draw: ImageDraw.ImageDraw, size: int, count: int) -> None:
    for _ in range(count):
        cx, cy = rng.uniform(0, size, 2)
        rx, ry = size * rng.uniform(0.02, 0.07, 2)
        colour = (*rng.integers(0, 256, 3).tolist(), int(rng.integers(60, 180)))
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour)


def _shape_polygons(shape: str, rng: np.random.Generator, radius: float) -> list[np.ndarray]:
    """Polygons (in object coordinates, centred on 0) that draw one object of ``shape``."""
    if shape == "disc":
        angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        squash = rng.uniform(0.75, 1.0)  # slightly elliptic, so it is not a perfect template
        return [np.stack([np.cos(angles), squash * np.sin(angles)], axis=1) * radius]
    if shape == "square":
        half = radius * 0.85
        return [np.asarray([[-half, -half], [half, -half], [half, half], [-half, half]])]
    if shape == "triangle":
        angles = np.asarray([-math.pi / 2, math.pi / 6, 5 * math.pi / 6])
        angles = angles + rng.uniform(-0.25, 0.25, 3)
        return [np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius]
    if shape == "stripes":
        bars = int(rng.integers(3, 6))
        width = 2 * radius / (2 * bars - 1)
        polygons = []
        for bar in range(bars):
            left = -radius + 2 * bar * width
            polygons.append(
                np.asarray(
                    [
                        [left, -radius],
                        [left + width, -radius],
                        [left + width, radius],
                        [left, radius],
                    ]
                )
            )
        return polygons
    raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPE_CLASSES)}")


def draw_shape_image(seed: int, label: int, index: int, image_size: int) -> Image.Image:
    """Image ``index`` of class ``SHAPE_CLASSES[label]``: a pure function of its arguments."""
    return draw_shapes_image(seed, (label,), index, image_size, salt=label)


def draw_shapes_image(
    seed: int, labels: tuple[int, ...], index: int, image_size: int, salt: int
) -> Image.Image:
    """One object per class in ``labels`` (several for the multi-label generator)."""
    rng = np.random.default_rng([seed, salt, index, image_size])
    size = image_size
    background, base = _background(rng, size)
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8)).convert("RGBA")
    clutter = Image.new("RGBA", (size, size))
    _blobs(rng, ImageDraw.Draw(clutter), size, int(rng.integers(0, 4)))
    canvas = Image.alpha_composite(canvas, clutter)

    scale = 1.0 if len(labels) == 1 else 0.6  # several objects: smaller, so they fit
    for label in labels:
        radius = size * rng.uniform(0.22, 0.38) * scale
        center = tuple(rng.uniform(radius, size - radius, 2).tolist())
        angle = rng.uniform(0, 2 * math.pi)
        # Hue leans towards the class (centres 90° apart, ±75° jitter: neighbours overlap).
        hue = (label / len(SHAPE_CLASSES) + rng.uniform(-75, 75) / 360) % 1.0
        hsv = (hue, rng.uniform(0.4, 0.9), rng.uniform(0.6, 1))
        rgb = [int(255 * c) for c in colorsys.hsv_to_rgb(*hsv)]
        colour = (*rgb, int(rng.integers(170, 256)))  # lower alpha = fainter object
        layer = Image.new("RGBA", (size, size))
        draw = ImageDraw.Draw(layer)
        for polygon in _shape_polygons(SHAPE_CLASSES[label], rng, radius):
            draw.polygon(_rotated(polygon, angle, center), fill=colour)
        canvas = Image.alpha_composite(canvas, layer)

    occluders = Image.new("RGBA", (size, size))
    _blobs(rng, ImageDraw.Draw(occluders), size, int(rng.integers(0, 2)))
    canvas = Image.alpha_composite(canvas, occluders).convert("RGB")
    canvas = canvas.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0, size / 128))))
    noise = rng.standard_normal((size, size, 3), dtype=np.float32) * rng.uniform(3, 12)
    noisy = np.asarray(canvas, dtype=np.float32) + noise
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def read_synthetic(
    generator: str, *, image_size: int, seed: int = 0, per_class: int = 150
) -> ReaderResult:
    """Samples of a seeded synthetic generator (``shapes`` or ``shapes_multilabel``); images are
    drawn on load."""
    if generator not in GENERATORS:
        raise ValueError(
            f"unknown synthetic generator {generator!r}; available: {', '.join(GENERATORS)}"
        )
    if per_class < 3:
        raise ValueError(f"--per-class must be at least 3 (one image per split), got {per_class}")
    if generator == "shapes_multilabel":
        samples = _multilabel_samples(generator, image_size, seed, per_class)
    else:
        samples = [
            Sample(
                f"{generator}/{name}/{index:05d}",
                label,
                functools.partial(draw_shape_image, seed, label, index, image_size),
            )
            for label, name in enumerate(SHAPE_CLASSES)
            for index in range(per_class)
        ]
    banner = (
        f"SYNTHETIC data: {generator!r} generator, {len(SHAPE_CLASSES)} classes × "
        f"{per_class} images at {image_size} px, seed {seed} (not medical images)"
    )
    return ReaderResult(
        samples=samples,
        classes=list(SHAPE_CLASSES),
        source=f"synthetic:{generator}",
        options={"generator": generator, "per_class": per_class, "version": SHAPES_VERSION},
        synthetic=True,
        banner=banner,
        multilabel=generator == "shapes_multilabel",
    )


def _multilabel_samples(generator: str, image_size: int, seed: int, per_class: int) -> list[Sample]:
    """``shapes_multilabel``: each image holds 1-3 different shapes; its label is that set.
    ``per_class × 4`` images in all (so each shape appears in about half of them)."""
    rng = np.random.default_rng([seed, 1_000_003])
    samples = []
    for index in range(per_class * len(SHAPE_CLASSES)):
        k = int(rng.integers(1, 4))
        labels = tuple(sorted(int(c) for c in rng.choice(len(SHAPE_CLASSES), k, replace=False)))
        draw = functools.partial(draw_shapes_image, seed, labels, index, image_size, 1_000_003)
        samples.append(Sample(f"{generator}/{index:05d}", labels, draw))
    return samples


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src",
        metavar="GENERATOR",
        choices=GENERATORS,
        help=f"synthetic generator name ({', '.join(GENERATORS)})",
    )
    parser.add_argument(
        "--per-class", type=int, default=150, help="images per class (default: 150)"
    )


def _read(args: argparse.Namespace) -> ReaderResult:
    return read_synthetic(
        args.src, image_size=args.image_size, seed=args.seed, per_class=args.per_class
    )


READER = ReaderSpec(
    name="synthetic",
    help="SYNTHETIC demo images (not medical): 'shapes', 4 classes drawn at the target size",
    description=(__doc__ or "") + "\nLayout: SRC is a generator name, not a path, e.g.\n"
    "    python -m preprocess synthetic shapes data/shapes --per-class 150 --image-size 64\n",
    add_arguments=_add_arguments,
    read=_read,
    src_is_path=False,
)
