"""A REAL-image task that ships in a package: defective solar cells in electroluminescence scans.

The ``elpv-dataset`` wheel (1.0.0.post1, PyPI, 91 MB; installed with cass-hpc, no download at pack
time) holds 2,624 electroluminescence (EL) scans of single solar cells, 300×300 8-bit grey, cut
from high-resolution EL images of 44 PV modules and corrected for perspective and lens distortion,
with an expert's defect probability (0, 1/3, 2/3, 1) and the module type (mono / poly) per cell in
``labels.csv``. Real infrared-luminescence scans of industrial parts: not medical images.

Sources: Buerhop-Lutz, Deitsch, Maier, Gallwitz, Berger, Doll, Hauch, Camus, Brabec, "A Benchmark
for Visual Identification of Defective Solar Cells in Electroluminescence Imagery", EU PVSEC 2018,
doi:10.4229/35thEUPVSEC20182018-5CV.3.15; Deitsch et al., "Automatic classification of defective
photovoltaic module cells in electroluminescence images", Solar Energy 185:455–468, 2019,
doi:10.1016/j.solener.2019.02.067. https://github.com/zae-bayern/elpv-dataset

Licence: the images are CC BY-NC-SA 4.0 (non-commercial, share-alike; the package code is
Apache-2.0). We never commit the images or packed shards: they are packed from the installed
wheel on the machine that trains on them.

Classes, from the expert's defect probability p: ``functional`` (p = 0), ``possibly_defective``
(p = 1/3 or 2/3: 401 cells, too few of p = 2/3 alone, 106, for a class of their own),
``defective`` (p = 1). Each scan is replicated to RGB by the decoder and resized by the packer.

Split: fixed and module-disjoint, so the test cells come from modules never trained on.
``labels.csv`` has no module id, but the files are stored module by module, and the module type
falls into 10 contiguous runs (60, 300, 180, 360, 714, 530, 72, 180, 48, 180 cells; 60-cell
multiples and the 48/72-cell module sizes): a mono/poly switch is a module switch. Test = runs 3,
6 and 8 (cell0541–0900, cell2145–2216, cell2397–2444: 480 cells, both types); val = run 7 (poly,
cell2217–2396, 180 cells); train = runs 0, 1, 2, 4, 5 and 9. Val is run 7, not run 0 (mono, 60
cells), because run 0 has a single possibly-defective cell and val needs every class (run 7 has
152 / 15 / 13). Caveat: the module order is inferred from the file order and the type runs, not
documented by the authors; two modules of one type stored back to back share a run (which only
coarsens the grouping), but a module whose cells were scattered across the order would leak
between splits. The reader checks the run lengths and refuses a ``labels.csv`` that differs.

``--cap-functional N`` (default 800) keeps N of the 1,099 functional train cells, drawn by
``--seed`` (spread over the train modules; a first-N cap would keep only the first modules), and
every defective and possibly-defective cell: train goes from 1,964 to 1,665 images, about 1.3×
the digits task's 1,259, so ``experiment=recipes method=cass,cass_plus,supervised`` on it should
take about 20 min on 2 CPU cores, well within an hour (scaled from the digits timings in
docs/health.md, not measured). ``--cap-functional 0`` keeps them all. Val and test are never
capped. Leave the grid's ``split_seed`` unset: a re-drawn split pools all three and is no longer
module-disjoint.

Class counts as packed by ``python -m preprocess elpv package OUT`` (seed 0):

    class               train   val   test
    functional            800   152    257
    possibly_defective    324    15     62
    defective             541    13    161
    total               1,665   180    480
"""

from __future__ import annotations

import argparse
import functools
import itertools
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from preprocess.readers import ReaderResult, ReaderSpec, Sample, open_image
from preprocess.readers.common import decode_options, file_sha256

SOURCES = ("package",)
CLASSES = ("functional", "possibly_defective", "defective")
CLASS_OF_THIRDS = {0: 0, 1: 1, 2: 1, 3: 2}  # defect probability × 3 → class index
RUN_LENGTHS = (60, 300, 180, 360, 714, 530, 72, 180, 48, 180)  # the type runs, in file order
TEST_RUNS = frozenset({3, 6, 8})
VAL_RUNS = frozenset({7})
DEFAULT_CAP_FUNCTIONAL = 800
PACKAGE = "elpv-dataset"


@dataclass(frozen=True)
class Cell:
    """One row of ``labels.csv``: the image path (relative to it), defect class, type and run."""

    path: str
    label: int
    kind: str  # module type: mono or poly
    run: int  # index of the contiguous run of one module type this cell lies in


def split_of_run(run: int) -> str:
    """The fixed split of every cell in type run ``run``."""
    return "test" if run in TEST_RUNS else "val" if run in VAL_RUNS else "train"


def data_dir() -> Path:
    """The installed package's data folder (``labels.csv`` and ``images/``)."""
    try:
        import elpv_dataset
    except ImportError as err:
        raise ValueError(
            f"the elpv task reads the scans inside the {PACKAGE} package: pip install {PACKAGE}"
        ) from err
    return Path(elpv_dataset.__file__).parent / "data"


def class_of(probability: str, where: str) -> int:
    """Class index of an expert's defect probability (0, 1/3, 2/3 or 1); ``where`` names the row."""
    try:
        thirds = float(probability) * 3
    except ValueError:
        thirds = -1.0
    if round(thirds) not in CLASS_OF_THIRDS or abs(thirds - round(thirds)) > 1e-6:
        raise ValueError(f"{where}: defect probability {probability!r} is not 0, 1/3, 2/3 or 1")
    return CLASS_OF_THIRDS[round(thirds)]


def read_cells(labels: Path) -> list[Cell]:
    """The rows of ``labels`` (``path probability type``, whitespace-separated) with their type
    run; ValueError naming the row or the runs when the file is not the one the split was set on."""
    rows = []
    for number, line in enumerate(labels.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f"{labels}, line {number}"
        if len(fields) != 3 or fields[2] not in ("mono", "poly"):
            raise ValueError(f"{where}: expected 'path probability mono|poly', got {line!r}")
        rows.append((fields[0], class_of(fields[1], where), fields[2]))
    runs = [list(group) for _, group in itertools.groupby(rows, key=lambda row: row[2])]
    lengths = tuple(len(run) for run in runs)
    if lengths != RUN_LENGTHS:
        raise ValueError(
            f"{labels}: module-type runs of {lengths} cells, expected {RUN_LENGTHS}; the fixed "
            f"split was set on {PACKAGE} 1.0.0.post1 — pip install {PACKAGE}==1.0.0.post1"
        )
    return [
        Cell(path, label, kind, index)
        for index, run in enumerate(runs)
        for path, label, kind in run
    ]


def cap_functional_train(cells: list[Cell], cap: int, seed: int) -> list[Cell]:
    """``cells`` with only ``cap`` functional train cells, drawn by ``seed`` (0: no cap)."""
    functional = [i for i, c in enumerate(cells) if c.label == 0 and split_of_run(c.run) == "train"]
    if cap == 0 or len(functional) <= cap:
        return cells
    kept = set(np.random.default_rng(seed).choice(functional, size=cap, replace=False).tolist())
    dropped = set(functional) - kept
    return [c for i, c in enumerate(cells) if i not in dropped]


def first_per_class(cells: list[Cell], limit: int) -> list[Cell]:
    """The first ``limit`` cells of each class in each split, in file order."""
    seen: dict[tuple[str, int], int] = {}
    kept = []
    for cell in cells:
        key = (split_of_run(cell.run), cell.label)
        if seen.get(key, 0) < limit:
            seen[key] = seen.get(key, 0) + 1
            kept.append(cell)
    return kept


def read_elpv(
    source: str = "package",
    *,
    per_class: int | None = None,
    cap_functional: int = DEFAULT_CAP_FUNCTIONAL,
    seed: int = 0,
    decode: dict | None = None,
) -> ReaderResult:
    """The samples of the elpv task with their fixed split; ``per_class`` keeps the first N per
    class per split (tests), ``cap_functional`` caps the functional train cells (0: no cap)."""
    if source not in SOURCES:
        raise ValueError(f"unknown elpv source {source!r}; available: {', '.join(SOURCES)}")
    if per_class is not None and per_class < 1:
        raise ValueError(f"--per-class must be at least 1 (one image per split), got {per_class}")
    if cap_functional < 0:
        raise ValueError(f"--cap-functional must be 0 (no cap) or more, got {cap_functional}")
    root = data_dir()
    all_cells = read_cells(root / "labels.csv")
    cells = cap_functional_train(all_cells, cap_functional, seed)
    if per_class is not None:
        cells = first_per_class(cells, per_class)
    samples = [
        Sample(
            f"elpv/{Path(c.path).stem}",
            c.label,
            functools.partial(open_image, root / c.path, **(decode or {})),
            split_of_run(c.run),
        )
        for c in cells
    ]
    package = f"{PACKAGE} {version(PACKAGE)}"
    train_functional = sum(c.label == 0 and split_of_run(c.run) == "train" for c in all_cells)
    capped = (
        f"functional train cells capped at {cap_functional} of {train_functional} (seed {seed})"
        if 0 < cap_functional < train_functional
        else "functional train cells not capped"
    )
    banner = (
        f"REAL images: {len(samples)} electroluminescence scans of solar cells (300×300 grey, "
        f"3 defect classes, 44 PV modules) from the copy inside {package}; fixed module-disjoint "
        f"split (test: type runs 3, 6, 8; val: run 7); {capped}; CC BY-NC-SA 4.0, do not "
        f"commit; not medical images"
    )
    return ReaderResult(
        samples=samples,
        classes=list(CLASSES),
        source=f"package:{package} ({len(all_cells)} images)",
        options={
            # the test split holds other modules than training: split_seed must not re-draw it
            "split_groups": "module",
            "source": source,
            "per_class": per_class,
            "cap_functional": cap_functional,
            "labels_sha256": file_sha256(root / "labels.csv"),
        },
        banner=banner,
    )


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", metavar="SOURCE", choices=SOURCES, help="where the scans come from: package"
    )
    parser.add_argument(
        "--per-class",
        type=int,
        default=None,
        help="keep the first N images of each class in each split (tests; default: all)",
    )
    parser.add_argument(
        "--cap-functional",
        type=int,
        default=DEFAULT_CAP_FUNCTIONAL,
        help="keep N of the 1,099 functional TRAIN cells, drawn by --seed (default: "
        f"{DEFAULT_CAP_FUNCTIONAL}; 0 keeps all); val and test are never capped",
    )


def _read(args: argparse.Namespace) -> ReaderResult:
    return read_elpv(
        args.src,
        per_class=args.per_class,
        cap_functional=args.cap_functional,
        seed=args.seed,
        decode=decode_options(args),
    )


READER = ReaderSpec(
    name="elpv",
    help="REAL EL scans of solar cells shipped in the elpv-dataset package (2,624, 3 classes)",
    description=(__doc__ or "") + "\nLayout: SRC is the source name, e.g.\n"
    "    python -m preprocess elpv package data/elpv --image-size 64\n",
    add_arguments=_add_arguments,
    read=_read,
    src_is_path=False,
)
