"""Mean ± variance over seeds and the paper's results table (Tables 2-5), best cells marked.

Every function is pure: a DataFrame in, a DataFrame or :class:`Table` out, so the tests can
assert exact cells. The paper reports ``mean ± variance`` over five seeds (App. F.2.1); we
compute both variance and standard deviation with ddof 1 (the sample estimates; the paper does
not say which) and show the one asked for. Under each cell (after it in Markdown/LaTeX) we add
the 95 % t-interval of the mean over replicates (:mod:`.stats`), which the paper does not give.

Example:
    >>> summary = aggregate(frame)                       # every metric, long form
    >>> rows = summary[summary["metric"] == "micro_f1"]  # one (experiment, dataset)
    >>> results_table(rows, spread="var", title="brain_mri").cells
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from cass_hpc.report.format import (
    MISSING,
    format_cell,
    format_fraction,
    format_interval,
    paper_order,
    row_label,
)
from cass_hpc.report.records import CELL_COLUMNS, METRIC_PREFIX, ROW_COLUMNS, metric_names
from cass_hpc.report.stats import CONFIDENCE, half_width

SUMMARY_COLUMNS = (
    *CELL_COLUMNS, "metric", "mean", "std", "var", "n", "ci_low", "ci_high", "best"
)  # fmt: skip
SPREADS = ("var", "std")
SPREAD_WORDS = {"var": "variance", "std": "std"}
LOWER_IS_BETTER = frozenset({"loss"})  # every other metric: higher is better


@dataclass(frozen=True)
class Table:
    """A formatted table: text cells (index = row labels), which cells are their column's best
    (printed bold), a title and notes printed under it; ``sub`` (same shape as ``cells``, or
    empty) holds a second line per cell: under the cell in the console, after it in a file."""

    title: str
    cells: pd.DataFrame
    best: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: tuple[str, ...] = ()
    name: str = ""  # file-name stem when the table is written on its own
    sub: pd.DataFrame = field(default_factory=pd.DataFrame)

    def sub_text(self, row: object, column: object) -> str:
        """The second line of the cell at (row, column); ``""`` if none."""
        if self.sub.empty or row not in self.sub.index or column not in self.sub.columns:
            return ""
        return str(self.sub.loc[row, column] or "")

    def is_best(self, row: object, column: object) -> bool:
        """Whether the cell at (row, column) is marked best."""
        if self.best.empty or row not in self.best.index or column not in self.best.columns:
            return False
        return bool(self.best.loc[row, column])


def aggregate(frame: pd.DataFrame, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """Long-form summary over replicates: one row per cell and metric with mean, std, var
    (ddof 1), n, the 95 % t-interval of the mean (``ci_low``, ``ci_high``; :mod:`.stats`) and
    ``best`` (the cell has its column's best mean within its (experiment, dataset, fraction,
    metric); higher is better except for ``loss``).

    A replicate is one (split_seed, seed) of the cell; ``std``, ``var`` and the interval are
    NaN when only one is present; a replicate whose metric is null is not counted in ``n``.
    """
    parts = []
    for metric in metric_names(frame) if metrics is None else metrics:
        column = METRIC_PREFIX + metric
        if column not in frame:
            continue
        values = frame.dropna(subset=[column]).groupby(list(CELL_COLUMNS))[column]
        stats = values.agg(mean="mean", std="std", var="var", n="count").reset_index()
        stats.insert(len(CELL_COLUMNS), "metric", metric)
        parts.append(stats)
    if not parts or all(part.empty for part in parts):
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    summary = pd.concat([part for part in parts if not part.empty], ignore_index=True)
    counts = zip(summary["std"], summary["n"], strict=True)
    width = [half_width(std, n, CONFIDENCE) for std, n in counts]
    summary["ci_low"], summary["ci_high"] = summary["mean"] - width, summary["mean"] + width
    summary["best"] = mark_best(summary, ["experiment", "dataset", "label_fraction", "metric"])
    return paper_order(summary).reset_index(drop=True)[list(SUMMARY_COLUMNS)]


def mark_best(summary: pd.DataFrame, by: list[str]) -> pd.Series:
    """True where a row's mean (to the 4 decimals shown) is the best of its ``by`` group; ties
    are all marked."""
    shown = summary["mean"].astype(float).round(4)
    score = shown.where(~summary["metric"].isin(LOWER_IS_BETTER), -shown)
    top = score.groupby([summary[c] for c in by], dropna=False).transform("max")
    return (score == top) & score.notna()


def _single_table(frame: pd.DataFrame) -> None:
    tables = frame[["experiment", "dataset"]].drop_duplicates()
    if len(tables) > 1:
        names = ", ".join("/".join(map(str, row)) for row in tables.itertuples(index=False))
        raise ValueError(f"expected the rows of one (experiment, dataset), got {names}")


def results_table(
    summary: pd.DataFrame, spread: str = "var", title: str = "", metric: str | None = None
) -> Table:
    """The paper's results table for ONE (experiment, dataset) of an :func:`aggregate` summary.

    Rows are every (method, arm, backbone) seen (per setting, if the grid swept one), labelled
    by :func:`row_label`, in paper order; columns every label fraction seen, ascending; cells
    ``mean ± spread (n=k)`` of ``metric`` (default: the only metric in ``summary``), ``—``
    where that row has no result at that fraction, the 95 % interval as their second line
    (``sub``). Best = best mean of its column.
    """
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {', '.join(SPREADS)}, got {spread!r}")
    _single_table(summary)
    if metric is not None:
        summary = summary[summary["metric"] == metric]
    elif summary["metric"].nunique() > 1:
        raise ValueError(f"pass metric=; the summary holds {sorted(summary['metric'].unique())}")
    ordered = paper_order(summary)

    def label(setting: str, method: str, arm: str, backbone: str) -> str:
        return row_label(method, arm, backbone) + (f" · {setting}" if setting else "")

    keys = ["setting", *ROW_COLUMNS]
    rows = list(dict.fromkeys(ordered[keys].itertuples(index=False, name=None)))
    columns = [format_fraction(f) for f in sorted(ordered["label_fraction"].unique())]
    index = pd.Index([label(*row) for row in rows], name="Method · Arm (backbone)")
    cells = pd.DataFrame(MISSING, index=index, columns=columns, dtype=object)
    best = pd.DataFrame(False, index=index, columns=columns, dtype=bool)
    sub = pd.DataFrame("", index=index, columns=columns, dtype=object)
    for cell in ordered.itertuples(index=False):
        row = label(cell.setting, cell.method, cell.arm, cell.backbone)
        column = format_fraction(cell.label_fraction)
        cells.loc[row, column] = format_cell(cell.mean, getattr(cell, spread), int(cell.n))
        sub.loc[row, column] = format_interval(cell.ci_low, cell.ci_high)
        best.loc[row, column] = bool(cell.best)
    return Table(title=title, cells=cells, best=best, sub=sub)


def coverage(
    frame: pd.DataFrame,
    axes: Iterable[str] = ("method", "arm", "label_fraction", "seed", "split_seed", "setting"),
) -> tuple[int, int]:
    """(cells present, cells expected) for one table's records.

    Expected = the (method, arm) pairs seen times the product of the distinct values seen on
    every other axis (fractions · seeds · split seeds · settings), so a grid cell that never
    wrote results.json shows up as the difference, and an arm a method cannot pretrain (MAE's
    CNN) is not counted as missing.
    """
    axes = [axis for axis in axes if axis in frame]
    present = len(frame[axes].drop_duplicates())
    pairs = [axis for axis in ("method", "arm") if axis in axes]
    expected = len(frame[pairs].drop_duplicates()) if pairs else 1
    expected *= math.prod(frame[a].nunique(dropna=False) for a in axes if a not in pairs)
    return present, expected


def metric_rows(summary: pd.DataFrame, metrics: dict[tuple[str, str], str]) -> pd.DataFrame:
    """The rows of ``summary`` whose metric is the one chosen for their (experiment, dataset)."""
    chosen = summary.apply(
        lambda row: metrics.get((row["experiment"], row["dataset"])) == row["metric"], axis=1
    )
    return summary[chosen.astype(bool)] if len(summary) else summary
