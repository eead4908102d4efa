"""The gain in performance per label fraction, exactly as the paper computes it (App. G.0.3).

"To calculate the performance gain per label fraction, we sum the improvement over both CNN and
Transformers, followed by dividing that by the number of the participating datasets. For
example, for the 1% label fraction gain, we divided by 2, as we only calculated results for 1%
label fraction using the 1) brain tumor MRI, and 2) ISIC-2019 dataset."

So, per fraction f and baseline B (DINO or supervised), with each dataset's own metric (F1, or
balanced accuracy for ISIC-2019):

    gain(f) = 100 · Σ_datasets Σ_{arm ∈ CNN, ViT} (CASS[arm, f] − B[arm, f]) / #datasets

in percentage points. A dataset participates at f when CASS and B both have a mean for both
arms there. Fed the paper's Tables 2-5 this gives +10.13 (100 %), as the abstract states, but
+5.21 (10 %) and −7.45 (1 %) where the abstract states 5.9 and 3.8 (see docs/report.md).

Example:
    >>> gains_frame(summary_rows)   # rows: dataset, method, arm, label_fraction, mean
"""

from __future__ import annotations

import math

import pandas as pd

from cass_hpc.report.format import MISSING, format_fraction, method_label
from cass_hpc.report.tables import Table

ARMS = ("cnn", "vit")
BASELINES = ("dino", "supervised")
GAIN_COLUMNS = ("label_fraction", "baseline", "gain_pp", "datasets", "participating", "left_out")


def gains_frame(summary: pd.DataFrame, method: str = "cass") -> pd.DataFrame:
    """Gain of ``method`` over each baseline per label fraction (App. G.0.3), long form.

    ``summary`` holds one mean per (dataset, method, arm, label_fraction) — one metric per
    dataset, one experiment. Returns one row per (fraction, baseline): ``gain_pp`` (percentage
    points; NaN when no dataset participates), ``datasets`` (the divisor), ``participating`` and
    ``left_out`` (datasets with some but not all four means, comma-separated).
    """
    rows = []
    if summary.empty:
        return pd.DataFrame(columns=list(GAIN_COLUMNS))
    means = summary.pivot_table(
        index=["dataset", "label_fraction"], columns=["method", "arm"], values="mean",
        aggfunc="mean",
    )  # fmt: skip
    for fraction in sorted(summary["label_fraction"].unique()):
        at = means.xs(fraction, level="label_fraction")
        for baseline in BASELINES:
            needed = [(m, a) for m in (method, baseline) for a in ARMS]
            if not all(any((m, a) in at.columns for a in ARMS) for m in (method, baseline)):
                continue  # one of the two methods did not run at all
            total, used, left = 0.0, [], []
            for dataset, row in at.iterrows():
                values = [row.get(column, math.nan) for column in needed]
                if all(pd.notna(v) for v in values):
                    cnn, vit = values[0] - values[2], values[1] - values[3]
                    total += cnn + vit
                    used.append(str(dataset))
                elif any(pd.notna(v) for v in values):
                    left.append(str(dataset))
            rows.append({
                "label_fraction": fraction,
                "baseline": baseline,
                "gain_pp": 100 * total / len(used) if used else math.nan,
                "datasets": len(used),
                "participating": ", ".join(used),
                "left_out": ", ".join(left),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=list(GAIN_COLUMNS))


def format_gain(gain_pp: float | None) -> str:
    """``+10.13 pp``; ``—`` if unknown."""
    if gain_pp is None or not math.isfinite(gain_pp):
        return MISSING
    return f"{gain_pp:+.2f} pp"


def gains_table(
    gains: pd.DataFrame, title: str = "", paper: dict[float, float] | None = None
) -> Table:
    """Rows label fractions; columns the gain over each baseline present, the datasets it is
    averaged over, and (if given) the paper's stated gain over DINO."""
    rows: dict[str, dict[str, str]] = {}
    for item in gains.itertuples(index=False):
        row = rows.setdefault(format_fraction(item.label_fraction), {})
        row[f"CASS vs {method_label(item.baseline)}"] = format_gain(item.gain_pp)
        row[f"Datasets (vs {method_label(item.baseline)})"] = (
            f"{item.datasets}: {item.participating}" if item.datasets else "0"
        )
        if paper is not None and item.baseline == "dino":
            stated = paper.get(round(float(item.label_fraction), 6))
            row["Paper (vs DINO, abstract)"] = MISSING if stated is None else f"+{stated:.2f} pp"
    cells = pd.DataFrame.from_dict(rows, orient="index", dtype=object).fillna(MISSING)
    cells.index.name = "Label fraction"
    left = [f"{format_fraction(g.label_fraction)} vs {method_label(g.baseline)}: {g.left_out}"
            for g in gains.itertuples(index=False) if g.left_out]  # fmt: skip
    notes = (f"left out (a mean missing for an arm or method): {'; '.join(left)}",) if left else ()
    return Table(title=title, cells=cells, notes=notes)
