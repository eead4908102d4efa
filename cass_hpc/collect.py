"""``python -m cass_hpc.collect RUNDIR [RUNDIR ...]``: every results.json → the paper's tables.

Finds results.json files anywhere under each RUNDIR (with the overrides in the state.json
beside each), skips (with a one-line warning naming the file) any that is not valid JSON or not
a ``cass-hpc-results/1`` record, counts a requeued or rerun cell once (newest ``created`` wins),
then prints and writes, per (experiment, dataset):

- the results table (paper Tables 2-5): rows method · arm (backbone) in paper order, then
  per method the two arms together (``· val-selected arm``: the arm with the better
  validation score; ``· ensemble``: the mean of both arms' test probabilities), columns label
  fractions, cells ``mean ± variance (n=replicates)`` (``--spread std`` for std) with the 95 %
  t-interval under them, ``—`` where no result exists, the best of each column in bold; or,
  when the grid swept a setting (an ablation grid), the ablation table in the layout of App. C/D;
- the paired test over replicates (seed, split seed) of CASS and CASS+ against each baseline,
  per arm and fraction: mean difference, paired t-test p, n;
- ours beside the paper's values for the paper's datasets, with the difference;
- paper Table 1 (cumulative pretraining time, DINO CNN + ViT vs CASS, ratio) and the gains of
  App. G.0.3 per label fraction (CASS vs DINO, CASS vs supervised);
- the detailed pretraining-time table with each net's k-NN score start → end (the starting
  weights, then those handed to fine-tuning), COLLAPSE lines, a line per net whose pretraining
  ended below its start; PNG plots.

Files (written atomically) in ``RUNDIR/summary`` (the first RUNDIR) or ``--out``: results.md,
results.tex (booktabs), results.csv (long form, every metric), pretrain_time.md/.csv,
timing.csv, gains.csv, paper_comparison.csv, paired_tests.csv (with the exact Wilcoxon p),
per_class.csv (per-class metrics, mean over replicates), val_selected.csv (which arm validation
chose, per replicate and metric) and ``plots/*.png``. The table logic is pure and
lives in :mod:`cass_hpc.report`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from rich.console import Console

from cass_hpc import store
from cass_hpc.report import arms, page, plots, records, render, settings
from cass_hpc.report.build import Report, build_report
from cass_hpc.report.format import slug
from cass_hpc.report.paper import canonical_dataset, metric_for
from cass_hpc.report.records import CollectError
from cass_hpc.report.tables import SPREADS

EXIT_OK = 0
EXIT_USAGE = 2  # argparse's own exit status for bad arguments; we use it for unusable input too


def parse_metric_choices(values: list[str]) -> dict[str, str]:
    """``["balanced_accuracy", "dermofit=macro_f1"]`` → ``{"*": ..., "dermofit": ...}``."""
    choices: dict[str, str] = {}
    for value in values:
        dataset, _, metric = value.rpartition("=")
        if not metric:
            raise CollectError(f"--metric {value!r}: give NAME or DATASET=NAME")
        choices[dataset or "*"] = metric
    return choices


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m cass_hpc.collect",
        description=(
            "Collect every results.json under RUNDIR(s) into the CASS paper's tables, one per "
            "experiment and dataset: the test metric per method · arm (paper row order; then "
            "both arms together: the arm chosen on validation and the CNN + ViT ensemble) and "
            "label fraction as 'mean ± variance (n=replicates)' with its 95 % t-interval, '—' "
            "where no result exists yet, the best of each column in bold (ablation grids: one "
            "row per swept value, App. C/D); the paired test (paired t, df = n - 1) of CASS "
            "against each baseline; "
            "ours beside the paper's values; paper Table 1 (pretraining time, DINO vs CASS); "
            "the gains of App. G.0.3; plots. Broken results.json files are warned about and "
            "skipped; a rerun of the same cell key counts once (newest 'created')."
        ),
        epilog=(
            "Metric per dataset as the paper: F1 (= our micro_f1, pooled over images and labels "
            "as the authors' notebooks compute it) for autoimmune, Dermofit and brain MRI; "
            "balanced_accuracy for ISIC-2019; macro_f1 for any other dataset. Writes "
            "results.md/.tex/.csv, pretrain_time.md/.csv, timing.csv, gains.csv, "
            "paper_comparison.csv, paired_tests.csv, per_class.csv, val_selected.csv and "
            "plots/*.png atomically to RUNDIR/summary (or --out). "
            "Exit status 2 when a RUNDIR is missing or none holds a usable results.json."
        ),
    )
    parser.add_argument(
        "rundirs", metavar="RUNDIR", type=Path, nargs="+", help="folder(s) searched recursively"
    )
    parser.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="[DATASET=]NAME",
        help="test metric of the tables: NAME for every dataset, DATASET=NAME for one "
        "(repeatable); micro_f1, macro_f1, balanced_accuracy, auroc, loss or any key of "
        "results.json 'metrics' (default: the paper's metric per dataset, see below)",
    )
    parser.add_argument(
        "--spread",
        choices=SPREADS,
        default="var",
        help="spread over seeds after ± (default: var, as the paper; ddof 1)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for the files (default: RUNDIR/summary)"
    )
    parser.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    parser.add_argument(
        "--page",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write each task's results page to DIR: <dataset>.md (per method and arm: "
        "score, paired Δ vs supervised, k-NN start → end, pretraining time; the verdict "
        "lines) and <dataset>.png (docs/results holds the published ones)",
    )
    return parser


def collect(
    rundirs: list[Path],
    out: Path,
    metric_choices: dict[str, str],
    spread: str,
    console: Console,
    errors: Console,
    draw_plots: bool = True,
    page: Path | None = None,
) -> list[Path]:
    """Load, tabulate, print and write (and the task pages to ``page``); returns the paths
    written. Raises CollectError."""

    def warn(message: str) -> None:
        errors.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)

    def say(message: str, **style: object) -> None:
        console.print(message, markup=False, highlight=False, soft_wrap=True, **style)

    paths = records.find_results(rundirs)
    loaded = records.load_records(paths, warn)
    if not loaded:
        where = ", ".join(map(str, rundirs))
        raise CollectError(f"no usable results.json under {where} ({len(paths)} skipped)")
    frame = settings.annotate(records.records_frame(loaded))
    frame, notes = records.deduplicate(frame)
    available = records.metric_names(frame)
    for metric in metric_choices.values():
        if metric not in available:
            raise CollectError(
                f"metric {metric!r} has a value in no results.json; have: {', '.join(available)}"
            )
    names = {str(d) for d in frame["dataset"].unique()}
    names |= {c for c in map(canonical_dataset, names) if c is not None}
    if unknown := sorted(set(metric_choices) - {"*"} - names):
        raise CollectError(
            f"--metric {unknown[0]}={metric_choices[unknown[0]]}: no dataset {unknown[0]!r} in "
            f"the results; have: {', '.join(sorted(names))}"
        )
    derived, choices, arm_notes = arms.both_arms(frame)
    plot_dir = out / "plots" if draw_plots else None
    report = build_report(frame, metric_choices, spread, plot_dir, derived)

    for group in ("results", "pretrain"):
        for table in report.tables(group):
            console.print(render.to_rich(table))
            for note in table.notes:
                say(note)
    for line in report.collapse:
        say(line, style="bold red")
    for line in report.worse_than_start + report.behind_supervised:
        say(line, style="bold yellow")
    for line in report.best:
        say(line, style="bold")
    skipped = len(paths) - len(loaded)
    say(f"collected {len(frame)} cell result(s) from {len(paths)} results.json ({skipped} skipped)")
    for note in notes + arm_notes + report.notes:
        say(f"note: {note}")
    written = _write(report, out, warn, {"val_selected.csv": choices.to_csv(index=False)})
    if page is not None:
        written += _write_pages(frame, report, metric_choices, page, warn, draw_plots)
    return written


def _write_pages(
    frame: pd.DataFrame,
    report: Report,
    metric_choices: dict[str, str],
    out: Path,
    warn: Callable[[str], None],
    draw_plots: bool,
) -> list[Path]:
    """One page per (experiment, dataset) of the main grids: ``<dataset>.md`` and ``.png``
    (``<experiment>-<dataset>`` when a dataset has several experiments)."""
    pairs = frame[["experiment", "dataset"]].drop_duplicates().itertuples(index=False)
    metrics = {(e, d): metric_for(str(d), metric_choices) for e, d in pairs}
    rows = page.page_rows(frame, report.summary, report.paired, metrics)
    if rows.empty:
        warn("--page: no cell of a main grid (no swept setting) to put on a page")
        return []
    experiments = rows.groupby("dataset")["experiment"].nunique()
    command = "python -m cass_hpc.collect " + " ".join(sys.argv[1:])
    written: list[Path] = []
    for (experiment, dataset), part in rows.groupby(["experiment", "dataset"], sort=True):
        stem = slug(dataset) if experiments[dataset] == 1 else f"{slug(experiment)}-{slug(dataset)}"
        title = dataset if dataset == experiment else f"{dataset} ({experiment})"
        mine = frame[(frame["experiment"] == experiment) & (frame["dataset"] == dataset)]
        drawn = None
        if draw_plots:
            path = out / f"{stem}.png"
            drawn = plots.guarded(
                lambda p=part, t=title, f=path: page.page_plot(p, t, f), warn, str(path)
            )
        lines = page.verdicts(report.paired, report.pretrain, experiment, dataset)
        settings = str(mine["fixed_settings"].iloc[0]) if len(mine) else ""
        text = page.page_markdown(part, lines, drawn.name if drawn else None, command, settings)
        store.write_text(out / f"{stem}.md", text)
        written += [out / f"{stem}.md", *([drawn] if drawn else [])]
    return written


def _write(
    report: Report, out: Path, warn: Callable[[str], None], extra: dict[str, str]
) -> list[Path]:
    """Every file of the report, atomically; plots last (a failing plot is warned about)."""
    said = report.collapse + report.worse_than_start + report.behind_supervised + report.best
    collapse = [f"**{line}**" for line in said]
    results = [render.to_markdown(t) for t in report.tables("results")] + collapse
    worse = [f"**{line}**\n" for line in report.worse_than_start]
    pretrain = [render.to_markdown(t) for t in report.tables("pretrain")] + worse
    written = {
        out / "results.md": "\n".join(results) + "\n",
        out / "results.tex": "\n".join(render.to_latex(t) for t in report.tables("results")),
        out / "results.csv": report.summary.to_csv(index=False),
        out / "pretrain_time.md": "\n".join(pretrain or ["No results with pretraining yet.\n"]),
        out / "pretrain_time.csv": report.pretrain.to_csv(index=False),
        out / "timing.csv": report.timing.to_csv(index=False),
        out / "gains.csv": report.gains.to_csv(index=False),
        out / "paper_comparison.csv": report.comparisons.to_csv(index=False),
        out / "paired_tests.csv": report.paired.to_csv(index=False),
        out / "per_class.csv": report.per_class.to_csv(index=False),
        **{out / name: text for name, text in extra.items()},
    }
    for path, text in written.items():
        store.write_text(path, text)
    drawn = [plots.guarded(draw, warn, name) for name, draw in report.plots]
    return [*written, *(path for path in drawn if path is not None)]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cass_hpc.collect``; returns the exit status."""
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:  # a log file: let tables take their natural width
        console = Console(width=200)
    errors = Console(stderr=True)
    out = args.out if args.out is not None else args.rundirs[0] / "summary"
    try:
        choices = parse_metric_choices(args.metric)
        written = collect(
            args.rundirs, out, choices, args.spread, console, errors, not args.no_plots, args.page
        )
    except (CollectError, store.NoSpaceError) as error:
        errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    console.print("wrote:", markup=False)
    for path in written:
        console.print(f"  {path}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
