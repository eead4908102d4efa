"""A second REAL-image task that ships in a package: radio galaxies from the VLA FIRST survey.

The ``firstgalaxydata`` wheel (0.2.1, PyPI, 14 MB; installed with cass-hpc, no download at pack
time) holds the FIRST radio galaxy data set of Griese et al.: 2,158 cutouts of the VLA FIRST
survey at 20 cm, 300×300 8-bit grey (1.8″ per pixel, 9′ across), each a different galaxy, with
curated morphology labels from six published catalogues (MiraBest, Gendre/CoNFIG, Capetti 2017a/b,
Baldi 2018, Proctor 2011), in ``galaxy_data.zip`` as ``galaxy_data/all/<class>/<RA>_<DEC>_
<label>_<catalogue>.png``. Real radio-interferometer images: not medical images.

Sources: Griese F. et al., "FIRST radio galaxy data set containing curated labels of classes FRI,
FRII, compact and bent", Data in Brief 47:108974, 2023, doi:10.1016/j.dib.2023.108974; data
doi:10.5281/zenodo.7120632; https://github.com/floriangriese/RadioGalaxyDataset. FIRST: Becker,
White & Helfand, ApJ 450:559, 1995.

Licence: the package code is MIT; the images are under the FIRST survey's terms ("Copyright:
1994, University of California. Permission is granted for publication and reproduction of this
material for scholarly, educational, and private non-commercial use", quoted in the package's
README). We never commit the images or packed shards: they are packed from the installed wheel on
the machine that trains on them.

Classes (label ids of the data set): ``FRI`` 495, ``FRII`` 924, ``Compact`` 391, ``Bent`` 348.
The reader checks that each file's label id matches its folder.

Split: fixed and by sky region, so the test galaxies lie in another part of the sky (other VLA
pointings) than any galaxy trained on. Test = declination in [10°, 20°); val = declination in
[30°, 35°); train = the rest. A cutout spans 9′, so the galaxies within 0.2° (12′) outside either
band's edges are dropped (each named in the manifest's skipped list): after that the closest
train and test cutouts are 43.8′ apart, and no galaxy or patch of sky is in two splits. The
authors' own train/valid/test folders are not used: 14 pairs across them lie within 5′ (their
cutouts overlap). A split by catalogue would not do either: the catalogue nearly fixes the class.
One cutout is constant (``Bent/22.446_0.776_3_Proctor_Tab1.png``, in train) and is dropped.

The sources are small and central (a compact source is about 5 px of the 300; the median bright
extent is 39 px), so each image is cut to its central ``--crop`` pixels (default 150, the size of
the MiraBest images cut from the same survey) before the packer resizes it: at 64 px a median
source then spans about 17 px instead of 8, and random crops in pretraining keep it.

Class counts as packed by ``python -m preprocess radiogalaxy package OUT``:

    class      train   val   test
    FRI          343    40    104
    FRII         678    50    184
    Compact      260    23    100
    Bent         265    21     59
    total      1,546   134    447    (31 dropped: 30 at a band's edge, 1 blank)
"""

from __future__ import annotations

import argparse
import functools
import io
import zipfile
from dataclasses import dataclass
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from PIL import Image

from preprocess.readers import ReaderResult, ReaderSpec, Sample
from preprocess.readers.common import file_sha256
from preprocess.readers.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, one_line

SOURCES = ("package",)
CLASSES = ("FRI", "FRII", "Compact", "Bent")  # label ids 0..3 of the data set
CLASS_COUNTS = (495, 924, 391, 348)  # of galaxy_data/all in firstgalaxydata 0.2.1
TEST_DEC = (10.0, 20.0)  # degrees, [low, high)
VAL_DEC = (30.0, 35.0)
GUARD_DEG = 0.2  # galaxies this close outside a band's edge are dropped (a cutout spans 0.15°)
BLANK = frozenset({"Bent/22.446_0.776_3_Proctor_Tab1.png"})  # constant image: nothing to learn
DEFAULT_CROP = 150  # MiraBest's 150×150 cutouts of FIRST (Porter & Scaife 2023)
PACKAGE = "firstgalaxydata"
ARCHIVE = "galaxy_data.zip"
PREFIX = "galaxy_data/all/"


@dataclass(frozen=True)
class Galaxy:
    """One cutout: its member in the archive, class index, sky position and catalogue."""

    member: str
    label: int
    ra: float
    dec: float
    catalogue: str


def split_of(dec: float) -> str | None:
    """The fixed split of a galaxy at declination ``dec``; None inside a guard band."""
    for name, (low, high) in (("test", TEST_DEC), ("val", VAL_DEC)):
        if low <= dec < high:
            return name
        if low - GUARD_DEG <= dec < low or high <= dec < high + GUARD_DEG:
            return None
    return "train"


def archive_path() -> Path:
    """The installed package's image archive (found without importing the package, whose
    ``__init__`` pulls in astropy and torch)."""
    spec = find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ValueError(
            f"the radiogalaxy task reads the images inside the {PACKAGE} package: "
            f"pip install {PACKAGE}==0.2.1"
        )
    path = Path(spec.origin).parent / ARCHIVE
    if not path.is_file():
        raise ValueError(f"{path} is missing: reinstall {PACKAGE}==0.2.1")
    return path


def parse_member(member: str) -> Galaxy:
    """``galaxy_data/all/FRI/<RA>_<DEC>_<label>_<catalogue>.png`` → :class:`Galaxy`; ValueError
    naming the member when its name or label does not fit."""
    folder, _, name = member[len(PREFIX) :].partition("/")
    parts = name[: -len(".png")].split("_", 3)
    try:
        ra, dec, label = float(parts[0]), float(parts[1]), int(parts[2])
        catalogue = parts[3]
    except (IndexError, ValueError):
        raise ValueError(f"{member}: expected <RA>_<DEC>_<label>_<catalogue>.png") from None
    if folder not in CLASSES or CLASSES.index(folder) != label:
        raise ValueError(f"{member}: label id {label} does not match its folder {folder!r}")
    return Galaxy(member, label, ra, dec, catalogue)


def read_galaxies(archive: Path) -> list[Galaxy]:
    """Every cutout listed in ``archive``, in archive order; ValueError when the archive is not
    the one the split was set on (other class counts) or cannot be read."""
    try:
        with zipfile.ZipFile(archive) as opened:
            members = [n for n in opened.namelist() if n.startswith(PREFIX) and n.endswith(".png")]
    except (OSError, zipfile.BadZipFile) as err:
        raise ValueError(f"{archive}: cannot read the archive ({one_line(err)})") from err
    galaxies = [parse_member(m) for m in members]
    counts = tuple(sum(g.label == i for g in galaxies) for i in range(len(CLASSES)))
    if counts != CLASS_COUNTS:
        raise ValueError(
            f"{archive}: class counts {dict(zip(CLASSES, counts, strict=True))}, expected "
            f"{dict(zip(CLASSES, CLASS_COUNTS, strict=True))}; the fixed split was set on "
            f"{PACKAGE} 0.2.1 — pip install {PACKAGE}==0.2.1"
        )
    return galaxies


def open_member(
    archive: str, member: str, *, crop: int = DEFAULT_CROP, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode one PNG of the archive to RGB, cut to its central ``crop`` pixels (0: whole);
    ImageDecodeError naming archive and member when it cannot be decoded."""
    where = f"{archive}:{member}"
    try:
        with zipfile.ZipFile(archive) as opened:
            data = opened.read(member)
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > max_pixels:
                raise ImageDecodeError(f"{image.width}×{image.height} is over {max_pixels} pixels")
            grey = np.asarray(image.convert("L"))
    except ImageDecodeError as err:
        raise ImageDecodeError(f"{where}: {err}") from err
    except Exception as err:  # zip and PIL raise anything (KeyError, OSError, zlib.error, ...)
        raise ImageDecodeError(
            f"{where}: cannot decode ({type(err).__name__}: {one_line(err)})"
        ) from err
    if crop:
        top, left = max(0, (grey.shape[0] - crop) // 2), max(0, (grey.shape[1] - crop) // 2)
        grey = grey[top : top + crop, left : left + crop]
    return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))


def first_per_class(samples: list[Sample], limit: int) -> list[Sample]:
    """The first ``limit`` samples of each class in each split, in archive order."""
    seen: dict[tuple[str | None, object], int] = {}
    kept = []
    for sample in samples:
        key = (sample.split, sample.label)
        if seen.get(key, 0) < limit:
            seen[key] = seen.get(key, 0) + 1
            kept.append(sample)
    return kept


def read_radiogalaxy(
    source: str = "package",
    *,
    per_class: int | None = None,
    crop: int = DEFAULT_CROP,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ReaderResult:
    """The samples of the radiogalaxy task with their fixed sky-region split; ``per_class``
    keeps the first N per class per split (tests), ``crop`` the central pixels kept."""
    if source not in SOURCES:
        raise ValueError(f"unknown radiogalaxy source {source!r}; available: {', '.join(SOURCES)}")
    if per_class is not None and per_class < 1:
        raise ValueError(f"--per-class must be at least 1 (one image per split), got {per_class}")
    if crop < 0:
        raise ValueError(f"--crop must be 0 (the whole 300×300 cutout) or more, got {crop}")
    archive = archive_path()
    samples, skipped = [], []
    for galaxy in read_galaxies(archive):
        name = galaxy.member[len(PREFIX) :]
        sample_id = f"radiogalaxy/{name[: -len('.png')]}"
        split = split_of(galaxy.dec)
        if name in BLANK:
            skipped.append((sample_id, "a constant image (no source in it)"))
        elif split is None:
            skipped.append(
                (sample_id, f"within {GUARD_DEG}° of the test or val band: its cutout could "
                 "overlap one in another split")
            )  # fmt: skip
        else:
            load = functools.partial(
                open_member, str(archive), galaxy.member, crop=crop, max_pixels=max_pixels
            )
            samples.append(Sample(sample_id, galaxy.label, load, split))
    if per_class is not None:
        samples = first_per_class(samples, per_class)
    package = f"{PACKAGE} {version(PACKAGE)}"
    banner = (
        f"REAL images: {len(samples)} VLA FIRST radio-galaxy cutouts (300×300 grey, central "
        f"{crop or 300} px kept; 4 morphology classes) from the copy inside {package}; fixed "
        f"sky-region split (test: declination {TEST_DEC[0]:g}–{TEST_DEC[1]:g}°, val: "
        f"{VAL_DEC[0]:g}–{VAL_DEC[1]:g}°, {len(skipped)} dropped at the band edges or blank); "
        "FIRST terms: non-commercial use, do not commit; not medical images"
    )
    return ReaderResult(
        samples=samples,
        classes=list(CLASSES),
        source=f"package:{package} ({sum(CLASS_COUNTS)} images)",
        options={
            # the test split holds another part of the sky: split_seed must not re-draw it
            "split_groups": "sky_region",
            "source": source,
            "per_class": per_class,
            "crop": crop,
            "archive_sha256": file_sha256(archive),
        },
        skipped=skipped,
        banner=banner,
    )


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", metavar="SOURCE", choices=SOURCES, help="where the images come from: package"
    )
    parser.add_argument(
        "--per-class",
        type=int,
        default=None,
        help="keep the first N images of each class in each split (tests; default: all)",
    )
    parser.add_argument(
        "--crop",
        type=int,
        default=DEFAULT_CROP,
        help=f"keep the central N×N pixels of each 300×300 cutout before resizing (default: "
        f"{DEFAULT_CROP}; 0 keeps the whole cutout)",
    )


def _read(args: argparse.Namespace) -> ReaderResult:
    return read_radiogalaxy(
        args.src,
        per_class=args.per_class,
        crop=args.crop,
        max_pixels=int(getattr(args, "max_pixels", DEFAULT_MAX_PIXELS)),
    )


READER = ReaderSpec(
    name="radiogalaxy",
    help="REAL VLA FIRST radio-galaxy images shipped in the firstgalaxydata package (2,158, 4 "
    "classes)",
    description=(__doc__ or "") + "\nLayout: SRC is the source name, e.g.\n"
    "    python -m preprocess radiogalaxy package data/radiogalaxy --image-size 64\n",
    add_arguments=_add_arguments,
    read=_read,
    src_is_path=False,
)
