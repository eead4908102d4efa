"""``python -m cass_hpc.collect RUNDIR``: every results.json under RUNDIR → the paper's tables.

Finds results.json files anywhere under RUNDIR, skips (with a one-line warning) any that is not
valid JSON or not a ``cass-hpc-results/1`` record, counts a requeued or rerun cell once (newest
``created`` wins), then prints and writes, per (experiment, dataset):

- the results table (paper Tables 2-5): rows method · arm (backbone) in paper order, columns label
  fractions, cells ``mean ± std (n=seeds)`` of one test metric, ``—`` where no result exists;
- the pretraining-time table (paper Table 1): wall time of the distinct pretraining runs per seed,
  summed, then mean ± std over seeds.

Files (written atomically): ``results.md``, ``results.csv`` (long form, every metric),
``pretrain_time.md``, ``pretrain_time.csv`` in ``RUNDIR/summary`` or ``--out``. The table logic is
pure and lives in :mod:`cass_hpc.tables`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cass_hpc import store, tables

EXIT_OK = 0
EXIT_USAGE = 2  # argparse's own exit status for bad arguments; we use it for unusable input too


class CollectError(Exception):
    """A problem with the input as a whole; the message is the one line shown to the user."""


def find_results(rundir: Path) -> list[Path]:
    """Every results.json under ``rundir``, sorted; raises CollectError if there is none."""
    if not rundir.exists():
        raise CollectError(f"{rundir} does not exist; pass the folder your grid writes runs to")
    if not rundir.is_dir():
        raise CollectError(f"{rundir} is not a folder; pass the folder your grid writes runs to")
    paths = sorted(rundir.rglob("results.json"))
    if not paths:
        raise CollectError(f"no results.json under {rundir}; has any grid cell finished yet?")
    return paths


def load_records(paths: list[Path], warn: Callable[[str], None]) -> list[dict[str, object]]:
    """Parse each results.json; one that cannot be used is reported through ``warn``, skipped."""
    records = []
    for path in paths:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            record = tables.parse_record(raw)
        except json.JSONDecodeError as error:
            warn(f"{path}: not valid JSON ({error}); skipped")
            continue
        except (OSError, UnicodeDecodeError) as error:
            warn(f"{path}: cannot be read ({error}); skipped")
            continue
        except tables.RecordError as error:
            warn(f"{path}: {error}; skipped")
            continue
        record["path"] = str(path)
        records.append(record)
    return records


def _rich_table(table: pd.DataFrame, title: str) -> Table:
    rich_table = Table(title=escape(title), title_justify="left")
    rich_table.add_column(escape(table.index.name or ""), no_wrap=True)
    for column in table.columns:
        rich_table.add_column(escape(str(column)), justify="right", no_wrap=True)
    for label, row in table.iterrows():
        rich_table.add_row(escape(str(label)), *(escape(str(value)) for value in row))
    return rich_table


def _table_groups(frame: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    return list(frame.groupby(list(tables.TABLE_COLUMNS), sort=True))


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m cass_hpc.collect",
        description=(
            "Collect every results.json under RUNDIR into the CASS paper's tables, one per "
            "experiment and dataset: the test metric per method · arm (paper row order) and label "
            "fraction as 'mean ± spread (n=seeds)', '—' where no result exists yet; and the "
            "pretraining wall time per method (distinct pretraining runs of a seed summed, then "
            "mean ± std over seeds). Broken results.json files are warned about and skipped; a "
            "rerun of the same cell key counts once (newest 'created')."
        ),
        epilog=(
            "Writes results.md, results.csv (long form, every metric), pretrain_time.md and "
            "pretrain_time.csv atomically to RUNDIR/summary (or --out). Exit status 2 when RUNDIR "
            "is missing or holds no usable results.json."
        ),
    )
    parser.add_argument("rundir", metavar="RUNDIR", type=Path, help="folder searched recursively")
    parser.add_argument(
        "--metric",
        default="macro_f1",
        help="test metric shown in the tables (default: macro_f1; also micro_f1, "
        "balanced_accuracy, loss or any key of results.json 'metrics')",
    )
    parser.add_argument(
        "--spread",
        choices=tables.SPREADS,
        default="std",
        help="spread over seeds shown after ± (default: std; the paper reports var), ddof 1",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for the files (default: RUNDIR/summary)"
    )
    return parser


def collect(
    rundir: Path, out: Path, metric: str, spread: str, console: Console, errors: Console
) -> list[Path]:
    """Load, tabulate, print and write; returns the paths written. Raises CollectError."""

    def warn(message: str) -> None:
        errors.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)

    paths = find_results(rundir)
    records = load_records(paths, warn)
    if not records:
        raise CollectError(f"no usable results.json under {rundir} ({len(paths)} skipped)")
    frame, notes = tables.deduplicate(tables.records_frame(records))
    available = tables.metric_names(frame)
    if metric not in available:
        raise CollectError(f"metric {metric!r} is in no results.json; have: {', '.join(available)}")
    summary = tables.aggregate(frame)
    spread_name = "std" if spread == "std" else "variance"
    markdown = [f"# Test {metric} (mean ± {spread_name} over seeds)"]
    for (experiment, dataset), part in _table_groups(frame):
        rows = summary[(summary["experiment"] == experiment) & (summary["dataset"] == dataset)]
        table = tables.results_table(rows, metric=metric, spread=spread)
        present, expected = tables.coverage(part)
        title = f"{dataset} — test {metric}, mean ± {spread_name} (experiment {experiment})"
        if part["synthetic"].any():
            title += " — SYNTHETIC data"
        console.print(_rich_table(table, title))
        console.print(f"{present} of {expected} cells present", markup=False)
        coverage_line = f"{present} of {expected} cells present"
        markdown += [f"## {title}", tables.to_markdown(table).rstrip(), coverage_line]

    timing = tables.pretrain_summary(frame)
    timing_markdown = ["# Pretraining wall time per seed (distinct runs summed), mean ± std"]
    for (experiment, dataset), part in _table_groups(timing):
        title = f"{dataset} — pretraining time (experiment {experiment})"
        table = tables.pretrain_table(part)
        console.print(_rich_table(table, title))
        timing_markdown += [f"## {title}", tables.to_markdown(table).rstrip()]
    if timing.empty:
        console.print("no results with pretraining yet", markup=False)
        timing_markdown.append("No results with pretraining yet.")

    collapsed = frame[frame["collapsed"]].groupby(["dataset", "method", "arm", "backbone"])
    for (dataset, method, arm, backbone), part in collapsed:
        line = (
            f"COLLAPSE: {dataset}: {method} · {arm} ({backbone}) — {len(part)} cell(s) fine-tuned "
            f"from a collapsed pretraining (output spread ≈ 0; see results.json 'warnings')"
        )
        console.print(line, style="bold red", markup=False, soft_wrap=True)
        markdown.append(f"**{line}**")

    skipped = len(paths) - len(records)
    counts = f"{len(frame)} cell result(s) from {len(paths)} results.json ({skipped} skipped)"
    console.print(f"collected {counts}", markup=False)
    for note in notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)

    written = {
        out / "results.md": "\n\n".join(markdown) + "\n",
        out / "results.csv": summary.to_csv(index=False),
        out / "pretrain_time.md": "\n\n".join(timing_markdown) + "\n",
        out / "pretrain_time.csv": timing.to_csv(index=False),
    }
    for path, text in written.items():
        store.write_text(path, text)
    return list(written)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cass_hpc.collect``; returns the exit status."""
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:  # a log file: let tables take their natural width
        console = Console(width=200)
    errors = Console(stderr=True)
    out = args.out if args.out is not None else args.rundir / "summary"
    try:
        written = collect(args.rundir, out, args.metric, args.spread, console, errors)
    except CollectError as error:
        errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    console.print("wrote:", markup=False)
    for path in written:
        console.print(f"  {path}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
