"""Everything the collector shows for a set of records, as one :class:`Report` (no I/O here
except through the plot callables it hands back).

For each (experiment, dataset): the results table (paper Tables 2-5) or, when the grid swept a
setting, the ablation table (App. C/D), with its coverage; ours beside the paper's values when
the dataset is one of the paper's (and not SYNTHETIC); each cell with its 95 % t-interval, the
rows of both arms together (val-selected arm, ensemble; :mod:`.arms`) and the paired test of
CASS against each baseline (:mod:`.paired`). Per experiment: paper Table 1 (DINO vs
CASS pretraining time) and the gains of App. G.0.3. Then the detailed pretraining-time tables,
COLLAPSE lines and the lines of nets whose pretraining ended below its k-NN start.

Example:
    >>> report = build_report(frame, metric_choices={}, spread="var", plot_dir=Path("plots"))
    >>> for table in report.tables("results"): print(to_markdown(table))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cass_hpc.report import plots
from cass_hpc.report.ablations import ablation_table, ablation_title
from cass_hpc.report.format import DERIVED_ARMS, slug
from cass_hpc.report.gains import GAIN_COLUMNS, gains_frame, gains_table
from cass_hpc.report.knn_start import worse_than_start
from cass_hpc.report.paired import TEST_COLUMNS, paired_table, paired_tests
from cass_hpc.report.paper import (
    COMPARISON_COLUMNS,
    PAPER_GAINS,
    PAPER_METRIC_WORDS,
    canonical_dataset,
    comparison,
    metric_for,
    timing_comparison,
)
from cass_hpc.report.per_class import per_class_frame
from cass_hpc.report.records import TABLE_COLUMNS
from cass_hpc.report.settings import swept_keys
from cass_hpc.report.tables import (
    LOWER_IS_BETTER,
    SPREAD_WORDS,
    Table,
    aggregate,
    coverage,
    results_table,
)
from cass_hpc.report.timing import (
    pretrain_health_table,
    pretrain_runs,
    pretrain_summary,
    pretrain_table,
    timing_frame,
    timing_table,
)
from cass_hpc.report.verdict import best_pretraining, not_above_supervised

KINDS = ("results", "pretrain", "finetune")  # the plots drawn per (experiment, dataset)


@dataclass
class Report:
    """Tables by group (``results`` → results.md/.tex, ``pretrain`` → pretrain_time.md), the
    long-form frames behind them (CSV), notes, COLLAPSE lines and the plots to draw."""

    sections: list[tuple[str, Table]] = field(default_factory=list)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    pretrain: pd.DataFrame = field(default_factory=pd.DataFrame)
    timing: pd.DataFrame = field(default_factory=pd.DataFrame)
    gains: pd.DataFrame = field(default_factory=pd.DataFrame)
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    paired: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_class: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    collapse: list[str] = field(default_factory=list)
    worse_than_start: list[str] = field(default_factory=list)  # pretraining lowered a net's k-NN
    behind_supervised: list[str] = field(default_factory=list)  # a method·arm Δ ≤ 0 vs supervised
    best: list[str] = field(default_factory=list)  # the best pretraining per arm and place
    plots: list[tuple[str, Callable[[], Path | None]]] = field(default_factory=list)

    def tables(self, group: str) -> list[Table]:
        """The tables of one group, in print order."""
        return [table for name, table in self.sections if name == group]


def _title(experiment: str, dataset: str, part: pd.DataFrame, text: str) -> str:
    fixed = str(part["fixed_settings"].iloc[0]) if "fixed_settings" in part else ""
    title = f"{dataset} — {text} (experiment {experiment}" + (f"; {fixed})" if fixed else ")")
    return title + (" — SYNTHETIC data" if part["synthetic"].any() else "")


def _cell_notes(part: pd.DataFrame, rows: pd.DataFrame, word: str, metric: str) -> tuple[str, ...]:
    """The notes under a results table: coverage, what a cell shows, the rows of both arms."""
    present, expected = coverage(part)
    notes = [
        f"{present} of {expected} cells present",
        f"cell: mean ± {word} (ddof 1) over n replicates (seed × data split); under it [a, b] = "
        "the 95 % t-interval of the mean (t quantile, df = n − 1; none for n = 1; wide for "
        "small n: t = 12.7 at n = 2, 4.3 at n = 3)",
    ]
    if rows["arm"].isin(DERIVED_ARMS).any():
        lower = "lower" if metric in LOWER_IS_BETTER else "higher"
        notes.append(
            f"val-selected arm: per replicate the arm with the {lower} validation {metric} "
            "(tie: CNN), its test score; ensemble: the mean of the two arms' test probabilities "
            "(argmax; multi-label: > 0.5), scored like a cell"
        )
    return tuple(notes)


def build_report(
    frame: pd.DataFrame,
    metric_choices: dict[str, str],
    spread: str = "var",
    plot_dir: Path | None = None,
    derived: pd.DataFrame | None = None,
) -> Report:
    """The whole report for deduplicated, annotated records (see :mod:`.records`).

    ``metric_choices``: ``{"*": metric}`` for every dataset and/or ``{dataset: metric}``; the
    rest get the paper's metric (:func:`~cass_hpc.report.paper.metric_for`). ``derived``: the
    val-selected and ensemble rows (:func:`~cass_hpc.report.arms.both_arms`), tabulated like
    the arms' cells.
    """
    cells = frame
    if derived is not None and not derived.empty:
        cells = pd.concat([frame, derived], ignore_index=True)
    report = Report(summary=aggregate(cells), per_class=per_class_frame(frame))
    summary, word = report.summary, SPREAD_WORDS[spread]
    comparisons, chosen_rows, tests = [], [], []
    for (experiment, dataset), part in frame.groupby(list(TABLE_COLUMNS), sort=True):
        metric = metric_for(str(dataset), metric_choices)
        rows = summary[(summary["experiment"] == experiment) & (summary["dataset"] == dataset)]
        have = sorted(rows["metric"].unique())
        rows = rows[rows["metric"] == metric]
        if rows.empty:
            report.notes.append(
                f"{experiment}/{dataset}: no result has metric {metric!r} (have: "
                f"{', '.join(have)}); pass --metric {dataset}=NAME"
            )
            continue
        chosen_rows.append(rows)
        notes = _cell_notes(part, rows, word, metric)
        keys = swept_keys(part["setting"])
        over = "seeds" if part["split_seed"].isna().all() else "replicates (seed × split)"
        text = f"test {metric}, mean ± {word} over {over}"
        if keys:
            title = _title(experiment, dataset, part, f"ablation: {ablation_title(keys)}; {text}")
            table = ablation_table(rows, spread, title)
        else:
            table = results_table(rows, spread, _title(experiment, dataset, part, text))
        report.sections.append(
            ("results", Table(table.title, table.cells, table.best, notes, sub=table.sub))
        )
        mine = cells[(cells["experiment"] == experiment) & (cells["dataset"] == dataset)]
        tested = paired_tests(mine, {(experiment, dataset): metric})
        if not tested.empty:
            tests.append(tested)
            title = _title(experiment, dataset, part, f"paired test over replicates, test {metric}")
            report.sections.append(("results", paired_table(tested, title)))
        canonical = canonical_dataset(str(dataset))
        if canonical and part["synthetic"].any():
            report.notes.append(f"{dataset}: SYNTHETIC data, not compared with the paper")
        elif canonical:
            fixed = str(part["fixed_settings"].iloc[0])
            compared, long, skipped = comparison(rows.assign(fixed_settings=fixed), spread)
            report.notes += [f"{experiment}/{dataset}: {note}" for note in skipped]
            if not compared.cells.empty:
                numbers = ", ".join(map(str, sorted(long["paper_table"].unique())))
                paper_metric = PAPER_METRIC_WORDS.get(metric_for(canonical, {}), "?")
                title = (
                    f"{dataset} beside the paper (Table {numbers}): ours test {metric}, mean ± "
                    f"{word}, vs the paper's {paper_metric}, mean ± variance (experiment "
                    f"{experiment})"
                )
                report.sections.append(("results", Table(title, compared.cells)))
                comparisons.append(long)
        if plot_dir is not None:
            stem = plot_dir / f"{slug(experiment)}_{slug(dataset)}"
            _add_plots(report, stem, rows, part, metric, f"{dataset} ({experiment})")

    report.paired = (
        pd.concat(tests, ignore_index=True) if tests else pd.DataFrame(columns=list(TEST_COLUMNS))
    )
    report.behind_supervised = not_above_supervised(report.paired)
    report.best = best_pretraining(report.paired)
    chosen = pd.concat(chosen_rows) if chosen_rows else summary.iloc[0:0]
    _add_timing_and_gains(report, frame, chosen, plot_dir)
    report.comparisons = (
        pd.concat(comparisons, ignore_index=True)
        if comparisons
        else pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    )

    report.pretrain = pretrain_summary(frame)
    report.worse_than_start = worse_than_start(report.pretrain)
    for (experiment, dataset), part in report.pretrain.groupby(list(TABLE_COLUMNS), sort=True):
        records = frame[(frame["experiment"] == experiment) & (frame["dataset"] == dataset)]
        title = _title(experiment, dataset, records, "pretraining wall time per method")
        report.sections.append(("pretrain", pretrain_table(part, title)))
        health = _title(experiment, dataset, records, "what pretraining handed to fine-tuning")
        report.sections.append(("pretrain", pretrain_health_table(part, health)))

    collapsed = frame[frame["collapsed"].astype(bool)]
    for (dataset, method, arm, backbone), part in collapsed.groupby(
        ["dataset", "method", "arm", "backbone"]
    ):
        report.collapse.append(
            f"COLLAPSE: {dataset}: {method} · {arm} ({backbone}) — {len(part)} cell(s) fine-tuned "
            f"from a collapsed pretraining (output spread ≈ 0; see results.json 'warnings')"
        )
    return report


def _add_plots(
    report: Report, stem: Path, rows: pd.DataFrame, part: pd.DataFrame, metric: str, title: str
) -> None:
    runs = pretrain_runs(part)
    results, pretrain, finetune = (Path(f"{stem}_{kind}.png") for kind in KINDS)
    report.plots += [
        (str(results), lambda: plots.results_bars(rows, metric, title, results)),
        (str(pretrain), lambda: plots.pretrain_curves(runs, f"{title}: pretraining", pretrain)),
        (
            str(finetune),
            lambda: plots.finetune_curves(part, metric, f"{title}: fine-tuning", finetune),
        ),
    ]


def _add_timing_and_gains(
    report: Report, frame: pd.DataFrame, chosen: pd.DataFrame, plot_dir: Path | None
) -> None:
    """Paper Table 1 (+ the paper's) and the App. G.0.3 gains, per experiment."""
    report.timing = timing_frame(frame)
    synthetic = frame.groupby("dataset")["synthetic"].any()
    for experiment, timing in report.timing.groupby("experiment", sort=True):
        if not timing["dino_runs"].any():
            continue  # Table 1 compares with DINO; the CASS time is in the pretraining table
        title = (
            f"Table 1 — cumulative pretraining time, every pretraining counted once, summed over "
            f"seeds (experiment {experiment})"
        )
        report.sections.append(("results", timing_table(timing, title)))
        real = timing[~timing["dataset"].map(synthetic).fillna(False).astype(bool)]
        compared = timing_comparison(real, f"Table 1 beside the paper's (experiment {experiment})")
        if not compared.cells.empty:
            report.sections.append(("results", compared))
        if plot_dir is not None:
            path = plot_dir / f"{slug(experiment)}_timing.png"
            report.plots.append(
                (
                    str(path),
                    lambda t=timing, p=path, e=experiment: plots.timing_bars(
                        t, f"pretraining time, DINO (CNN + ViT) vs CASS (experiment {e})", p
                    ),
                )
            )
    gains = []
    main = chosen[chosen["setting"] == ""]
    for experiment, rows in main.groupby("experiment", sort=True):
        table = gains_frame(rows)
        if table.empty:
            continue
        gains.append(table.assign(experiment=experiment))
        title = (
            f"Gain of CASS per label fraction, App. G.0.3: Σ over datasets and both arms of "
            f"(CASS − baseline) / #datasets, percentage points (experiment {experiment})"
        )
        report.sections.append(("results", gains_table(table, title, PAPER_GAINS)))
    empty = pd.DataFrame(columns=["experiment", *GAIN_COLUMNS])
    report.gains = pd.concat(gains, ignore_index=True) if gains else empty
