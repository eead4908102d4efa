"""Command line: ``python -m preprocess <reader> SRC OUT [options]`` packs a dataset into shards.

Bad input (a missing folder, a stray file, an existing different pack) ends with one line
``error: ...`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from cass_hpc.data.shards import STORES, Manifest
from preprocess.pack import check_apart, pack
from preprocess.parallel import default_workers
from preprocess.readers import DEFAULT_MAX_PIXELS, available_readers

_EPILOG = """examples:
  python -m preprocess folder ~/raw/brain_mri data/brain_mri
  python -m preprocess synthetic shapes data/shapes --per-class 150 --image-size 64
OUT gets manifest.json + <split>-NNNNN.h5 shards; it appears only when packing has finished."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subcommand per registered reader."""
    parser = argparse.ArgumentParser(
        prog="python -m preprocess",
        description="Pack a raw image dataset into HDF5 shards (uint8, resized, stratified "
        "seeded 70/10/20 splits unless the layout fixes them) for cass-hpc training.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    options = common.add_argument_group("pack options")
    options.add_argument(
        "--image-size",
        type=int,
        default=384,
        help="side of the square images stored, in px (default: 384, as the paper); with "
        "--store original it is not applied (synthetic images are still drawn at it)",
    )
    options.add_argument(
        "--store",
        choices=STORES,
        default="resized",
        help="resized: every image resized to --image-size square (default, as the paper); "
        "original: each image at its own size, as lossless PNG (resized when training)",
    )
    options.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="processes that decode and resize images (default: min(4, cores available) = "
        f"{default_workers()} here); the shards are identical for any number",
    )
    options.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the split draw and of synthetic images (default: 0)",
    )
    options.add_argument(
        "--shard-size", type=int, default=1024, help="images per shard file (default: 1024)"
    )
    options.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse an image with more pixels, naming it (decompression-bomb guard; default: "
        f"{DEFAULT_MAX_PIXELS}, Pillow's own limit)",
    )
    options.add_argument(
        "--overwrite", action="store_true", help="replace a different packed dataset already at OUT"
    )
    options.add_argument(
        "--name", default=None, help="dataset name in the manifest (default: OUT's folder name)"
    )
    readers = parser.add_subparsers(
        dest="reader",
        metavar="READER",
        required=True,
        title="readers (python -m preprocess READER -h for details)",
    )
    for spec in available_readers().values():
        sub = readers.add_parser(
            spec.name,
            help=spec.help,
            description=spec.description,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        spec.add_arguments(sub)
        sub.add_argument("out", metavar="OUT", help="output folder for the packed dataset")
    return parser


def run(args: argparse.Namespace, console: Console | None = None) -> Manifest:
    """Read SRC with the chosen reader and pack it to OUT; ValueError on bad input."""
    console = console or Console()
    for option in ("image_size", "shard_size", "workers", "max_pixels"):
        if getattr(args, option) <= 0:
            raise ValueError(
                f"--{option.replace('_', '-')} must be positive, got {getattr(args, option)}"
            )
    if args.seed < 0:
        raise ValueError(f"--seed must be non-negative, got {args.seed}")
    spec = available_readers()[args.reader]
    out = Path(args.out).expanduser().resolve()
    if spec.src_is_path:  # before reading: SRC may hold OUT's shards, or lie inside OUT
        check_apart(out, [("SRC", Path(args.src))])
    result = spec.read(args)
    if result.banner:
        console.print(result.banner, markup=False, highlight=False, soft_wrap=True)  # SYNTHETIC
    return pack(
        result.samples,
        result.classes,
        out,
        image_size=args.image_size,
        seed=args.seed,
        name=args.name or out.name,
        source=result.source,
        synthetic=result.synthetic,
        params={"reader": spec.name, "src": result.source, **result.options},
        shard_size=args.shard_size,
        overwrite=args.overwrite,
        skip_bad=bool(getattr(args, "skip_bad", False)),
        skipped=result.skipped,
        console=console,
        multilabel=result.multilabel,
        store=args.store,
        workers=args.workers,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: nothing was written to {args.out}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
