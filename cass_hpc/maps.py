"""``python -m cass_hpc.maps RUNDIR``: what the fine-tuned nets look at, and their embeddings.

For every (experiment, dataset, setting, label fraction, seed) of the finished cells under
RUNDIR, side by side for the methods present (DINO, CASS, CASS+, supervised; paper order):

- ``maps-<dataset>-<arm>-lf<f>-s<seed>.png``: the paper's maps (§5.6.6, App. E.2-E.3) of each
  method's fine-tuned net, averaged over ``--samples`` test images drawn with the test set's
  class distribution (App. E.3: 30 images; a seeded stratified draw, the same images for every
  method): for a CNN the channel-mean feature maps after its first convolution and its first
  five stages, for a Transformer the class-attention map of its first attention block
  (:mod:`cass_hpc.probes`);
- ``embeddings-<dataset>-lf<f>-s<seed>.png``: each fine-tuned net's test embeddings (pooled
  features before the classifier, ``Arm.features``) in 2-D (PCA, or UMAP when installed),
  coloured by class; rows methods, columns arms.

A cell is read from its results.json and ``model.pt`` (issue 14's cell contract); a cell from
before weights were kept is skipped with a one-line warning. PNGs go atomically to
``RUNDIR/summary/maps`` (or ``--out``). Exit status 2 when RUNDIR is missing or holds no usable
cell.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from torch.utils.data import DataLoader, Dataset, Subset

from cass_hpc.data.dataset import ShardDataset
from cass_hpc.data.resplit import ResplitDataset, split_dataset
from cass_hpc.data.shards import Manifest, read_manifest
from cass_hpc.data.transforms import eval_transform
from cass_hpc.device import resolve_device
from cass_hpc.models import Arm, ArmSpec, build_arm
from cass_hpc.probes import Maps, probe
from cass_hpc.report import map_plots, plots, records, settings
from cass_hpc.report.format import ARM_ORDER, METHOD_ORDER, slug

EXIT_OK, EXIT_USAGE = 0, 2
CONTRACT_FIELDS = ("dataset_path", "image_size", "backbone_kwargs", "classes")


class GroupKey(NamedTuple):
    """The cells drawn side by side: same data, test split, label fraction and seed."""

    experiment: str
    dataset: str
    setting: str  # the ablation setting ("" outside an ablation grid)
    split_seed: int | None  # None: the packed split; an int: a re-drawn one
    label_fraction: float
    seed: int


class MapsError(Exception):
    """A problem with the input as a whole; the message is the one line shown to the user."""


@dataclass(frozen=True)
class Cell:
    """One finished fine-tuning cell: its results.json record, folder and ablation setting."""

    record: Mapping[str, Any]
    directory: Path
    setting: str = ""

    @property
    def method(self) -> str:
        return str(self.record["method"]).lower()

    @property
    def arm(self) -> str:
        return str(self.record["arm"]).lower()

    @property
    def weights(self) -> Path:
        files = self.record.get("files")
        name = files.get("weights") if isinstance(files, dict) else None
        return self.directory / str(name or "model.pt")

    @property
    def group(self) -> GroupKey:
        r = self.record
        split_seed = r.get("split_seed")
        return GroupKey(str(r["experiment"]), str(r["dataset"]), self.setting,
                        None if split_seed is None else int(split_seed),
                        round(float(r["label_fraction"]), 6), int(r["seed"]))  # fmt: skip


def stratified_draw(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices into ``labels``, drawn without replacement with the same class distribution
    (App. E.3): each class gets its share of ``n`` rounded by largest remainder, then a seeded
    draw within it. Multi-hot labels are stratified on their first positive label. All indices
    when ``n`` covers the split. Sorted."""
    if n < 1:
        raise ValueError(f"the number of images must be >= 1, got {n}")
    labels = np.asarray(labels)
    if labels.ndim == 2:  # multi-label: the first positive label (-1: none) as the stratum
        labels = np.where(labels.any(axis=1), labels.argmax(axis=1), -1)
    if n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = n * counts / counts.sum()
    share = np.floor(quota).astype(int)
    for k in np.argsort(-(quota - share), kind="stable")[: n - share.sum()]:
        share[k] += 1
    rng = np.random.default_rng(seed)
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=s, replace=False)
        for c, s in zip(classes, share, strict=True)
    ]
    return np.sort(np.concatenate(picked))


@functools.lru_cache(maxsize=8)
def _manifest(path: str) -> Manifest:
    return read_manifest(path)


def evaluation_images(record: Mapping[str, Any]) -> ShardDataset | ResplitDataset:
    """The images a cell's maps and embeddings are drawn from: the test split the cell was
    evaluated on (the packed one of ``dataset_path``, or the one re-drawn by ``split_seed``),
    resized to its nets' input size (``image_size``)."""
    manifest = _manifest(str(record["dataset_path"]))
    transform = eval_transform(int(record["image_size"]))
    return split_dataset(manifest, "test", transform, record.get("split_seed"))


def _usable(raw: Mapping[str, Any], directory: Path) -> str | None:
    """Why a record cannot be mapped (one line), or None."""
    missing = [name for name in CONTRACT_FIELDS if name not in raw]
    if missing:
        return f"results.json has no {', '.join(missing)} (a cell from before weights were kept)"
    weights = Cell(raw, directory).weights
    return None if weights.is_file() else f"no {weights.name} (its weights were not kept)"


def find_cells(rundir: Path, warn: Callable[[str], None]) -> list[Cell]:
    """Every usable finished cell under ``rundir`` (a rerun counted once, newest); each one
    skipped is warned about, naming it. Raises MapsError when none is usable."""
    try:
        paths = records.find_results([rundir])
    except records.CollectError as error:
        raise MapsError(str(error)) from error
    frame = settings.annotate(records.records_frame(records.load_records(paths, warn)))
    if not frame.empty:
        frame, _ = records.deduplicate(frame)
    cells = []
    for path, setting in zip(frame.get("path", []), frame.get("setting", []), strict=True):
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        why = _usable(raw, Path(path).parent)
        if why:
            warn(f"{Path(path).parent}: {why}; skipped")
        else:
            swept = settings.parse_setting(str(setting))
            swept.pop("split_seed", None)  # a group axis of its own (GroupKey.split_seed)
            cells.append(Cell(raw, Path(path).parent, settings.format_setting(swept)))
    if not cells:
        raise MapsError(
            f"no usable fine-tuned cell under {rundir} ({len(paths)} results.json, none with "
            "its weights); run the grid with this version, then try again"
        )
    order = {"method": METHOD_ORDER, "arm": ARM_ORDER}
    return sorted(cells, key=lambda c: (c.group, order["arm"].get(c.arm, 9), c.arm,
                                        order["method"].get(c.method, 9), c.method))  # fmt: skip


def load_net(cell: Cell, device: torch.device) -> Arm:
    """The cell's fine-tuned net (its kept weights), in eval mode on ``device``."""
    spec = ArmSpec(
        name=str(cell.record["backbone"]),
        kwargs=dict(cell.record["backbone_kwargs"] or {}),
        pretrained=str(cell.weights),
    )
    arm = build_arm(spec, num_classes=len(cell.record["classes"]))
    return arm.to(device).eval()


def _stack(dataset: ShardDataset, indices: np.ndarray) -> torch.Tensor:
    return torch.stack([dataset[int(i)][0] for i in indices])


def embed(
    arm: Arm, dataset: Dataset, batch_size: int, device: torch.device, advance: Callable
) -> np.ndarray:
    """``Arm.features`` of every image of ``dataset``, in order: (n, D) float32; ``advance(k)``
    after each batch of k images (a progress bar)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    chunks = []
    with torch.no_grad():
        for images, _ in loader:
            chunks.append(arm.features(images.to(device)).float().cpu().numpy())
            advance(len(images))
    return np.concatenate(chunks)


def _class_of(labels: np.ndarray) -> np.ndarray:
    """Class index per image (multi-hot: the first positive label, -1 for none)."""
    if labels.ndim == 2:
        return np.where(labels.any(axis=1), labels.argmax(axis=1), -1)
    return labels.astype(np.int64)


def _name(kind: str, key: GroupKey, arm: str | None, prefix_experiment: bool) -> str:
    parts = [kind, *([key.experiment] if prefix_experiment else []), key.dataset,
             *([arm] if arm else []), f"lf{key.label_fraction:g}", f"s{key.seed}",
             *([f"ss{key.split_seed}"] if key.split_seed is not None else []),
             *([key.setting] if key.setting else [])]  # fmt: skip
    return slug("-".join(parts)) + ".png"


@dataclass
class Options:
    """What to draw and how (the command-line options)."""

    samples: int = 30
    seed: int = 0
    embed_limit: int | None = None
    projection: str = "pca"
    draw_maps: bool = True
    draw_embeddings: bool = True
    batch_size: int = 32


@dataclass
class Probed:
    """What one cell's net gave: its maps (with the images' mean and count) and embeddings."""

    cell: Cell
    maps: Maps | None = None
    mean_input: np.ndarray | None = None  # (H, W, 3) in [0, 1]
    samples: int = 0
    features: np.ndarray | None = None  # (n, D)
    classes: np.ndarray | None = None  # class index per embedded image


def probe_cell(cell: Cell, options: Options, device: torch.device, progress: Progress) -> Probed:
    """Load the cell's net and data once; its maps on a stratified draw of ``options.samples``
    test images and its embeddings of the test split (or a draw of ``options.embed_limit``).
    Raises ValueError (data, weights) or RuntimeError (torch) naming the problem."""
    dataset = evaluation_images(cell.record)
    if len(dataset) == 0:
        raise ValueError("its test split has no image")
    arm = load_net(cell, device)
    probed = Probed(cell)
    if options.draw_maps:
        drawn = stratified_draw(dataset.labels, options.samples, options.seed)
        images = _stack(dataset, drawn)
        probed.maps = probe(arm, images.to(device), options.batch_size)
        probed.mean_input = images.mean(dim=0).permute(1, 2, 0).numpy()
        probed.samples = len(drawn)
    if options.draw_embeddings:
        chosen = stratified_draw(dataset.labels, options.embed_limit or len(dataset), options.seed)
        task = progress.add_task(f"embedding {cell.directory.name}", total=len(chosen))
        probed.features = embed(arm, Subset(dataset, chosen.tolist()), options.batch_size,
                                device, lambda n: progress.advance(task, n))  # fmt: skip
        probed.classes = _class_of(dataset.labels[chosen])
        progress.remove_task(task)
    return probed


def draw_group(
    key: GroupKey, cells: list[Cell], options: Options, out: Path, device: torch.device,
    progress: Progress, warn: Callable[[str], None], prefix_experiment: bool = False,
) -> list[Path]:  # fmt: skip
    """Probe each cell of one group (one net loaded at a time) and write the group's PNGs: one
    maps figure per arm, one embeddings figure; a cell that fails is warned about and left out."""
    done: list[Probed] = []
    for cell in cells:
        try:
            done.append(probe_cell(cell, options, device, progress))
        except (ValueError, RuntimeError) as error:  # data, weights, split_seed, torch (OOM)
            warn(f"{cell.directory}: {error}; skipped")
            continue
        if done[-1].maps is not None and done[-1].maps.message:  # also said in its figure row
            warn(f"{cell.directory}: {done[-1].maps.message}")
    title = map_plots.group_title(key.dataset, key.setting, key.label_fraction, key.seed,
                                  key.split_seed)  # fmt: skip
    draws: list[tuple[str, Callable[[], Path]]] = []
    for arm in dict.fromkeys(p.cell.arm for p in done if p.maps is not None):
        rows = [p for p in done if p.cell.arm == arm and p.maps is not None]
        path = out / _name("maps", key, arm, prefix_experiment)
        shown = [(p.cell, p.maps) for p in rows]
        draws.append((path.name, functools.partial(
            map_plots.maps_figure, shown, rows[0].mean_input, rows[0].samples, title, path
        )))  # fmt: skip
    embedded = [(p.cell, p.features, p.classes) for p in done if p.features is not None]
    if embedded:
        classes = [str(c) for c in cells[0].record["classes"]]
        path = out / _name("embeddings", key, None, prefix_experiment)
        draws.append((path.name, functools.partial(
            map_plots.embeddings_figure, embedded, classes, options.projection, options.seed,
            title, path,
        )))  # fmt: skip
    drawn = [plots.guarded(draw, warn, name) for name, draw in draws]
    return [path for path in drawn if path is not None]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m cass_hpc.maps",
        description=(
            "Draw what the fine-tuned nets of a grid look at (CASS paper §5.6.6, App. E): per "
            "dataset, label fraction and seed, side by side for each method present (DINO, "
            "CASS, CASS+, supervised), the CNN's feature maps after its first convolution and "
            "first five stages and the Transformer's class-attention map of its first "
            "attention block, averaged over test images drawn with the test set's class "
            "distribution; and each net's test embeddings in 2-D, coloured by class."
        ),
        epilog=(
            "Reads each cell's results.json and model.pt (cells from before weights were kept "
            "are skipped with a warning). Writes maps-<dataset>-<arm>-lf<f>-s<seed>.png and "
            "embeddings-<dataset>-lf<f>-s<seed>.png atomically to RUNDIR/summary/maps (or "
            "--out). Exit status 2 when RUNDIR is missing or holds no usable cell."
        ),
    )
    parser.add_argument("rundir", metavar="RUNDIR", type=Path, help="a grid's run folder")
    parser.add_argument("--samples", type=int, default=30,
                        help="test images the maps are averaged over (default: 30, the paper's; "
                        "ISIC-2019 in the paper: 100)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified draw")
    parser.add_argument("--embed-limit", type=int, default=None, metavar="N",
                        help="embed a stratified draw of N test images (default: all)")  # fmt: skip
    parser.add_argument("--projection", choices=map_plots.PROJECTIONS, default="pca",
                        help="2-D projection of the embeddings (umap needs the umap-learn "
                        "package; default: pca)")  # fmt: skip
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the nets run (default: auto, the GPU if there is one)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for the PNGs (default: RUNDIR/summary/maps)"
    )
    parser.add_argument("--no-maps", action="store_true", help="draw no feature/attention maps")
    parser.add_argument("--no-embeddings", action="store_true", help="draw no embedding plots")
    return parser


def _options(args: argparse.Namespace) -> Options:
    """The options of ``args``, checked; MapsError naming the bad one."""
    for name in ("samples", "batch_size", "embed_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise MapsError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.no_maps and args.no_embeddings:
        raise MapsError("--no-maps and --no-embeddings together leave nothing to draw")
    if args.projection == "umap" and not map_plots.umap_available():
        raise MapsError("--projection umap needs the umap-learn package (pip install "
                        "umap-learn); use --projection pca")  # fmt: skip
    return Options(args.samples, args.seed, args.embed_limit, args.projection,
                   not args.no_maps, not args.no_embeddings, args.batch_size)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cass_hpc.maps``; returns the exit status."""
    args = build_parser().parse_args(argv)
    console, errors = Console(), Console(stderr=True)

    def warn(message: str) -> None:
        errors.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)

    try:
        options = _options(args)
        device = resolve_device(args.device)
        cells = find_cells(args.rundir, warn)
    except (MapsError, ValueError) as error:
        errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    out = args.out if args.out is not None else args.rundir / "summary" / "maps"
    groups: dict[GroupKey, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.group, []).append(cell)
    several = len({key[0] for key in groups}) > 1  # name files by experiment too
    written: list[Path] = []
    with Progress(console=errors, transient=True) as progress:
        for key, members in groups.items():
            written += draw_group(key, members, options, out, device, progress, warn, several)
    if not written:
        errors.print("error: no cell could be drawn (see the warnings)", markup=False)
        return EXIT_USAGE
    console.print("wrote:", markup=False)
    for path in written:
        console.print(f"  {path}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
