"""Pack reader samples into HDF5 shards: assign splits, decode, resize, write atomically.

Images are decoded once here (EXIF orientation applied, grey → RGB, alpha dropped) and, with
``store="resized"`` (default), resized to ``image_size`` × ``image_size`` bilinear without
cropping, as the paper's pipeline does (App. F.2.2), so training reads ready uint8 arrays (≈ 3×
faster than decoding JPEGs, PERF-NOTES); ``store="original"`` keeps each image at its own size
as lossless PNG bytes, resized by the run's transforms instead. Decoding runs in ``workers``
processes; the writer takes their results in a fixed order, so the shards are byte-identical
whatever the number of workers. Samples without a fixed split are split 70/10/20, stratified
and seeded. Packing is idempotent: re-packing the same source with the same options is a no-op
that prints "up to date".
"""

from __future__ import annotations

import contextlib
import functools
import json
import pickle
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

from cass_hpc.data.shards import (
    MANIFEST_NAME,
    SPLITS,
    STORES,
    Manifest,
    ShardError,
    ShardWriter,
    encode_png,
    read_manifest,
)
from cass_hpc.data.splits import stratified_split
from preprocess.parallel import OrderedMap
from preprocess.readers import ImageDecodeError, Sample

DEFAULT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
TINY_RATIO = 4  # an image whose shorter side is under 1/4 of --image-size is worth a warning
SERIAL_BELOW_S = 2.0  # a pack this short on one core is not worth starting worker processes
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def prepare_image(image: Image.Image, image_size: int | None) -> np.ndarray:
    """EXIF-orient, convert to RGB and resize (bilinear, no crop); (S, S, 3) uint8, or
    (H, W, 3) at the image's own size when ``image_size`` is None."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode in _HIGH_DEPTH_MODES:
        # 16-bit / float greyscale (common in medical TIFFs): stretch its own range to 0..255.
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
        image = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    image = image.convert("RGB")  # grey and palette → RGB; RGBA/LA alpha is dropped
    if image_size is not None and image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def check_apart(out: Path, inputs: Iterable[tuple[str, Path]]) -> None:
    """Refuse an OUT that overlaps what is read (``(what, path)`` pairs: SRC, a CSV, images):
    an input inside OUT would be replaced with it (--overwrite), and an OUT inside a source
    folder would be read as raw data next time. Call before anything is written."""
    out = out.expanduser().resolve()
    inside: list[tuple[str, Path]] = []
    for what, path in inputs:
        path = path.expanduser().resolve()
        if path == out or out in path.parents:
            inside.append((what, path))
        elif path in out.parents:
            raise ValueError(
                f"{out}: OUT lies inside {what} {path}; it would be read as raw "
                f"data next time — choose an OUT outside {what}"
            )
    if inside:
        (what, path), more = inside[0], len(inside) - 1
        others = f" (and {more} more input{'s' if more > 1 else ''})" if more else ""
        raise ValueError(
            f"{what} {path} lies inside OUT {out}{others}; packing replaces OUT as a whole "
            f"— choose an OUT that holds none of the data read"
        )


def assign_splits(samples: Sequence[Sample], classes: Sequence[str], seed: int) -> list[str]:
    """Each sample's split: its reader-given one, else drawn 70/10/20 stratified by ``seed``."""
    splits: list[str | None] = [s.split for s in samples]
    for sample in samples:
        if sample.split is not None and sample.split not in SPLITS:
            raise ValueError(
                f"{sample.sample_id}: split {sample.split!r} is not one of {', '.join(SPLITS)}"
            )
    free = [i for i, split in enumerate(splits) if split is None]
    if free and not isinstance(samples[free[0]].label, int | np.integer):  # multi-label
        multi_hot = np.zeros((len(free), len(classes)), dtype=np.int64)
        for row, i in enumerate(free):
            multi_hot[row, list(samples[i].label)] = 1
        for name, indices in stratified_split(multi_hot, DEFAULT_FRACTIONS, seed).items():
            for index in indices.tolist():
                splits[free[index]] = name
    elif free:
        labels = np.asarray([samples[i].label for i in free], dtype=np.int64)
        counts = np.bincount(labels, minlength=len(classes))
        for label, count in enumerate(counts.tolist()):
            if 0 < count < len(DEFAULT_FRACTIONS):
                raise ValueError(
                    f"class {classes[label]!r} has {count} image(s) to split "
                    f"70/10/20; it needs at least {len(DEFAULT_FRACTIONS)} — add images, "
                    f"drop the class, or give the split yourself (csv: a split column)"
                )
        for name, indices in stratified_split(labels, DEFAULT_FRACTIONS, seed).items():
            for index in indices.tolist():
                splits[free[index]] = name
    return [str(s) for s in splits]


def _canonical(params: dict) -> dict:
    return json.loads(json.dumps(params, sort_keys=True))


def _diff(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    changes = [
        f"{k}: {old.get(k, '∅')!r} → {new.get(k, '∅')!r}" for k in keys if old.get(k) != new.get(k)
    ]
    return "; ".join(changes[:4]) + ("; …" if len(changes) > 4 else "")


def _existing(out: Path, name: str, params: dict, console: Console) -> Manifest | None:
    """The dataset already at ``out`` if it was packed with the same params, else refuse."""
    if not (out / MANIFEST_NAME).is_file():
        return None
    manifest = read_manifest(out, verify=True)  # a damaged pack says how to re-pack it
    if _canonical(manifest.params) == params and manifest.name == name:
        total = sum(manifest.splits.values())
        _say(console, f"up to date: {out} ({total} images, same source and options)")
        return manifest
    changed = _diff(manifest.params, params) or f"name: {manifest.name!r} → {name!r}"
    raise ShardError(
        f"{out}: already holds a different packed dataset ({changed}); pass "
        f"--overwrite to replace it or choose another OUT"
    )


def pack(
    reader_samples: Sequence[Sample],
    classes: Sequence[str],
    out: str | Path,
    *,
    image_size: int = 384,
    seed: int = 0,
    name: str | None = None,
    source: str,
    synthetic: bool,
    params: dict,
    shard_size: int = 1024,
    overwrite: bool = False,
    skip_bad: bool = False,
    skipped: Sequence[tuple[str, str]] = (),
    console: Console | None = None,
    multilabel: bool = False,
    store: str = "resized",
    workers: int = 1,
) -> Manifest:
    """Write ``reader_samples`` to a packed dataset at ``out`` and return its manifest.

    ``params`` (the reader's name, resolved source and options) are recorded together with
    ``image_size``, ``seed``, ``shard_size`` and a non-default ``store``; an existing dataset at
    ``out`` with equal params is returned untouched ("up to date"), a different one is refused
    unless ``overwrite``. ``store`` is "resized" (``image_size`` square) or "original" (each
    image at its own size, PNG bytes). Up to ``workers`` processes decode (above 1, every
    sample's ``load`` must pickle; a pack shorter than ``SERIAL_BELOW_S`` on one core stays in
    this process); the shards do not depend on their number. ``skip_bad`` skips undecodable
    images instead of stopping; ``skipped`` lists samples the reader already left out. Both end
    up in the manifest's ``skipped``.
    """
    console = console or Console()
    out = Path(out).expanduser().resolve()
    name = name or out.name
    read = [("image", s.file) for s in reader_samples if s.file is not None]
    if not synthetic and Path(source).is_absolute():
        read.insert(0, ("SRC", Path(source)))
    check_apart(out, read)
    if store not in STORES:
        raise ValueError(f"--store must be one of {', '.join(STORES)}, got {store!r}")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    recorded = {"image_size": int(image_size), "seed": int(seed), "shard_size": int(shard_size)}
    if store != "resized":  # the default is left out, so packs made before --store stay current
        recorded["store"] = store
    params = _canonical({**params, **recorded})
    if not overwrite and (existing := _existing(out, name, params, console)) is not None:
        return existing
    if not reader_samples:
        raise ValueError(f"{source}: the reader found no images; nothing to pack")
    for sample in reader_samples:
        present = sample.label if multilabel else (sample.label,)
        if not all(0 <= c < len(classes) for c in present):
            raise ValueError(
                f"{sample.sample_id}: label {sample.label} is outside 0..{len(classes) - 1}"
            )
    if workers > 1:
        _check_picklable(reader_samples[0])
    splits = assign_splits(reader_samples, classes, seed)
    order = sorted(range(len(reader_samples)), key=lambda i: (SPLITS.index(splits[i]), i))

    started = time.perf_counter()
    stored_size = image_size if store == "resized" else None
    tiny: dict[int, tuple[int, int]] = {}  # reader index → (W, H) read, of images upscaled a lot
    with ShardWriter(
        out,
        name=name,
        classes=classes,
        image_size=stored_size,
        seed=seed,
        source=source,
        synthetic=synthetic,
        params=params,
        shard_size=shard_size,
        overwrite=overwrite,
        multilabel=multilabel,
        store=store,
    ) as writer:
        for sample_id, reason in skipped:
            writer.skip(sample_id, reason)
        progress = Progress(  # one bar per split, each counting that split's images
            TextColumn("packing {task.description:<5}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        prepare = functools.partial(_prepare, image_size=stored_size)
        ordered = [reader_samples[i] for i in order]
        results = OrderedMap(prepare, ordered, workers=workers, serial_below_s=SERIAL_BELOW_S)
        with progress, contextlib.closing(results):
            tasks = {
                split: progress.add_task(split, total=splits.count(split))
                for split in SPLITS
                if split in splits
            }
            for index, result in zip(order, results, strict=True):
                sample = reader_samples[index]
                if isinstance(result, ImageDecodeError):
                    if not skip_bad:
                        raise ImageDecodeError(
                            f"{result} — fix or remove it, or pass --skip-bad to leave it out"
                        ) from result
                    writer.skip(sample.sample_id, str(result))
                else:
                    stored, read_size = result
                    if stored_size is not None and min(read_size) * TINY_RATIO < stored_size:
                        tiny[index] = read_size
                    writer.add(splits[index], stored, sample.label, sample.sample_id)
                progress.advance(tasks[splits[index]])
        manifest = writer.commit()
    if tiny:
        first = min(tiny)  # in the reader's order
        width, height = tiny[first]
        _say(
            console,
            f"warning: {len(tiny)} image{'s' if len(tiny) > 1 else ''} had a shorter side under "
            f"1/{TINY_RATIO} of --image-size {image_size} and {'were' if len(tiny) > 1 else 'was'} "
            f"upscaled (first: {reader_samples[first].sample_id}, {width}×{height} px) — check "
            f"them, or pack at a smaller --image-size",
        )
    _summary(manifest, time.perf_counter() - started, results.processes, console)
    return manifest


def _check_picklable(sample: Sample) -> None:
    """Samples travel to worker processes: a reader's ``load`` must pickle (functools.partial
    of a module-level function), not be a lambda or a closure."""
    try:
        pickle.dumps(sample)
    except Exception as err:  # PicklingError, AttributeError, TypeError: all mean "cannot"
        raise ValueError(
            f"{sample.sample_id}: its loader cannot be sent to worker processes ({err}); "
            f"make the reader's load a functools.partial of a module-level function, or pass "
            f"--workers 1"
        ) from err


def _prepare(
    sample: Sample, image_size: int | None
) -> tuple[np.ndarray | bytes, tuple[int, int]] | ImageDecodeError:
    """One sample as the writer stores it (runs in a worker): an (S, S, 3) array, or PNG bytes
    when ``image_size`` is None, with the (W, H) it was read at; a bad image is returned, not
    raised, so it is skipped in order."""
    try:
        array, read_size = _decode(sample, image_size)
    except ImageDecodeError as err:
        return err
    stored = array if image_size is not None else encode_png(array, sample.sample_id)
    return stored, read_size


def _decode(sample: Sample, image_size: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """Load and prepare one sample, and its (W, H) as read; decode failures become
    ImageDecodeError naming the sample."""
    image = sample.load()  # readers raise ImageDecodeError naming the file; other errors pass
    try:
        return prepare_image(image, image_size), image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageDecodeError(f"{sample.sample_id}: cannot decode image ({err})") from err


def _say(console: Console, text: str) -> None:
    """Print plain text: no rich markup (paths may hold brackets), no wrapping (greppable logs)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _summary(manifest: Manifest, seconds: float, processes: int, console: Console) -> None:
    total = sum(manifest.splits.values())
    size = manifest.image_size
    stored = (
        f"{size}×{size}"
        if manifest.store == "resized"
        else f"original size (longest side {size} px, PNG)"
    )
    _say(console, f"{manifest.name}: {total} images, {manifest.num_classes} classes, {stored}")
    table = Table("class", *(Column(s, justify="right") for s in SPLITS))
    for cls in manifest.classes:
        table.add_row(cls, *(str(manifest.class_counts[s][cls]) for s in SPLITS))
    table.add_row("total", *(str(manifest.splits[s]) for s in SPLITS), style="bold")
    console.print(table)
    if manifest.multilabel:
        _say(console, "(multi-label: an image counts once under each of its labels)")
    for split in SPLITS:
        absent = [c for c in manifest.classes if not manifest.class_counts[split][c]]
        if absent and manifest.splits[split]:
            _say(
                console,
                f"warning: no {split} image of {', '.join(absent)}: {split} metrics cannot see "
                f"{'it' if len(absent) == 1 else 'them'} (macro averages skip absent classes)"
                f" — move some images there, or let the reader draw the split",
            )
    if manifest.skipped:
        _say(console, f"skipped {len(manifest.skipped)} file(s); listed in the manifest")
    rate = total / seconds if seconds > 0 else float("inf")
    decoding = f"{processes} decoding process{'es' if processes > 1 else ''}"
    _say(
        console,
        f"packed {total} images in {seconds:.1f} s ({rate:.0f} images/s, {decoding}) "
        f"→ {manifest.root}",
    )
