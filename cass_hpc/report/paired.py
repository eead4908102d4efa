"""CASS against each baseline, replicate by replicate: the paired test of every table cell.

Two cells of one (experiment, dataset, setting, arm, label fraction) that differ only in the
method saw the same data split and the same labelled subset when they share the replicate
(split_seed, seed), so we pair them on it and test the differences (:mod:`.stats`: two-sided
paired t-test shown, df = n − 1, the exact Wilcoxon signed-rank p beside it in the CSV; why the
t-test: with n ≤ 5 the exact Wilcoxon never reaches p < 0.05). Compared: CASS (``cass``) and
CASS+ (``cass_plus``) against DINO and supervised, and CASS+ against CASS; also on the
val-selected and ensemble rows (:mod:`.arms`). The paper tests nothing (App. F.2.1 reports
mean ± variance over five seeds).

Example:
    >>> tests = paired_tests(records, {("demo", "demo"): "macro_f1"})
    >>> paired_table(tests, title="demo").cells
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from cass_hpc.report.format import (
    ARM_LABELS,
    MISSING,
    format_fraction,
    format_interval,
    method_label,
    paper_order,
)
from cass_hpc.report.records import METRIC_PREFIX, REPLICATE_COLUMNS
from cass_hpc.report.stats import paired_test
from cass_hpc.report.tables import Table

COMPARISONS = (
    ("cass", "dino"), ("cass", "supervised"),
    ("cass_plus", "dino"), ("cass_plus", "supervised"), ("cass_plus", "cass"),
    ("dino", "supervised"), ("simclr", "supervised"), ("vicreg", "supervised"),
    ("byol", "supervised"), ("mae", "supervised"),
)  # fmt: skip
GROUP_COLUMNS = ("experiment", "dataset", "setting", "arm", "label_fraction")
TEST_COLUMNS = (
    *GROUP_COLUMNS, "metric", "method", "baseline", "n", "df", "mean_method", "mean_baseline",
    "mean_diff", "ci_low", "ci_high", "t", "p_t", "p_wilcoxon", "replicates",
)  # fmt: skip
ALPHA = 0.05
NOTE = (
    "Δ = mean over replicates of (method − baseline), each pair on the same replicate (split "
    "seed, seed: the same split and labelled subset); [a, b] = its 95 % t-interval; p = "
    "two-sided paired t-test (scipy ttest_rel, df = n − 1), bold where p < 0.05; no p for "
    "n < 2 or equal differences. The t-test because an exact two-sided Wilcoxon signed-rank "
    "test cannot give p < 0.05 with n ≤ 5 pairs (smallest p 0.0625 at n = 5); its exact p is in "
    "paired_tests.csv. With n this small, read p as a rough guide."
)


def _replicate_id(row: pd.Series) -> tuple[object, ...]:
    return tuple(None if pd.isna(row[c]) else row[c] for c in REPLICATE_COLUMNS)


def paired_tests(records: pd.DataFrame, metrics: Mapping[tuple[str, str], str]) -> pd.DataFrame:
    """Every comparison of :data:`COMPARISONS` present, per (experiment, dataset, setting,
    arm, fraction), on the metric chosen for its (experiment, dataset) in ``metrics``.

    ``records``: one row per replicate (the cells, with the rows of :mod:`.arms`), with
    ``metric.<name>`` columns. Returns :data:`TEST_COLUMNS`, one row per comparison; ``n`` is
    the number of replicates both methods have.
    """
    rows = []
    for keys, group in records.groupby(list(GROUP_COLUMNS), sort=True, dropna=False):
        where = dict(zip(GROUP_COLUMNS, keys, strict=True))
        metric = metrics.get((where["experiment"], where["dataset"]))
        column = METRIC_PREFIX + str(metric)
        if metric is None or column not in group:
            continue
        values = {
            method: {_replicate_id(r): r[column] for _, r in cells.iterrows()}
            for method, cells in group.groupby("method")
        }
        for method, baseline in COMPARISONS:
            if method not in values or baseline not in values:
                continue
            shared = sorted(
                (rid for rid in values[method] if rid in values[baseline]),
                key=lambda rid: tuple((v is not None, v if v is not None else 0) for v in rid),
            )
            ours = [values[method][rid] for rid in shared]
            theirs = [values[baseline][rid] for rid in shared]
            test = paired_test(ours, theirs)
            kept = [rid for rid, a, b in zip(shared, ours, theirs, strict=True)
                    if pd.notna(a) and pd.notna(b)]  # fmt: skip
            rows.append({
                **where, "metric": metric, "method": method, "baseline": baseline,
                "n": test.n, "df": test.df,
                "mean_method": _mean([values[method][rid] for rid in kept]),
                "mean_baseline": _mean([values[baseline][rid] for rid in kept]),
                "mean_diff": test.mean_diff, "ci_low": test.ci_low, "ci_high": test.ci_high,
                "t": test.t, "p_t": test.p_t, "p_wilcoxon": test.p_wilcoxon,
                "replicates": " ".join(_format_replicate(rid) for rid in kept),
            })  # fmt: skip
    if not rows:
        return pd.DataFrame(columns=list(TEST_COLUMNS))
    return paper_order(pd.DataFrame(rows, columns=list(TEST_COLUMNS))).reset_index(drop=True)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _format_replicate(rid: tuple[object, ...]) -> str:
    split_seed, seed = rid
    return f"s{seed}" if split_seed is None else f"split{split_seed}/s{seed}"


def format_p(p: float) -> str:
    """``p=0.041``, ``p<0.001``; ``""`` when undefined."""
    if p is None or not math.isfinite(p):
        return ""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def format_test(mean_diff: float, p: float, n: int) -> str:
    """``+0.0300 p=0.041 (n=3)``; without p where it is undefined; ``—`` without pairs."""
    if n == 0 or not math.isfinite(mean_diff):
        return MISSING
    p_text = format_p(p)
    return f"{mean_diff:+.4f} " + (f"{p_text} " if p_text else "") + f"(n={n})"


def paired_table(tests: pd.DataFrame, title: str = "") -> Table:
    """The tests of ONE (experiment, dataset): rows ``CASS vs DINO · CNN`` (· setting), columns
    label fractions, cells ``Δ p (n)`` with Δ's interval as second line, bold where p < 0.05."""

    def label(item: object) -> str:
        arm = ARM_LABELS.get(item.arm, str(item.arm).upper())
        text = f"{method_label(item.method)} vs {method_label(item.baseline)} · {arm}"
        return text + (f" · {item.setting}" if item.setting else "")

    rows = list(dict.fromkeys(label(item) for item in tests.itertuples(index=False)))
    columns = [format_fraction(f) for f in sorted(tests["label_fraction"].unique())]
    index = pd.Index(rows, name="Method vs baseline · arm")
    cells = pd.DataFrame(MISSING, index=index, columns=columns, dtype=object)
    sub = pd.DataFrame("", index=index, columns=columns, dtype=object)
    best = pd.DataFrame(False, index=index, columns=columns, dtype=bool)
    for item in tests.itertuples(index=False):
        row, column = label(item), format_fraction(item.label_fraction)
        cells.loc[row, column] = format_test(item.mean_diff, item.p_t, int(item.n))
        sub.loc[row, column] = format_interval(item.ci_low, item.ci_high)
        best.loc[row, column] = bool(math.isfinite(item.p_t) and item.p_t < ALPHA)
    return Table(title=title, cells=cells, best=best, notes=(NOTE,), sub=sub)
