"""Which pretraining paid, in words: one line per method and arm that did not beat its
supervised twin, and one naming the best pretraining per arm, so that nobody has to work it out
from the tables. Both read the paired tests against supervised (:mod:`.paired`: the same split,
seed and labelled subset on both sides).

Example:
    >>> not_above_supervised(paired)
    ['SimCLR · ViT did not beat supervised on digits at 10%: Δ -0.031 (p=0.41, n=3)']
    >>> best_pretraining(paired)  # doctest: +NORMALIZE_WHITESPACE
    ['best pretraining for the CNN on digits at 10%: SimCLR 0.812 (supervised 0.771,
      Δ +0.041, p=0.03, n=3)']
"""

from __future__ import annotations

import math

import pandas as pd

from cass_hpc.report.format import ARM_LABELS, format_fraction, method_label

PLACE = ("experiment", "dataset", "setting", "arm", "label_fraction")


def _against_supervised(paired: pd.DataFrame) -> pd.DataFrame:
    if paired.empty:
        return paired
    rows = paired[(paired["baseline"] == "supervised") & paired["arm"].isin(("cnn", "vit"))]
    return rows[rows["mean_diff"].notna()]


def _where(row: pd.Series) -> str:
    setting = "" if not row["setting"] or pd.isna(row["setting"]) else f" ({row['setting']})"
    return f"{row['dataset']}{setting} at {format_fraction(row['label_fraction'])}"


def _p(row: pd.Series) -> str:
    p = row["p_t"]
    return f"p={p:.2g}, " if isinstance(p, float) and math.isfinite(p) else ""


def not_above_supervised(paired: pd.DataFrame) -> list[str]:
    """A line per (method, arm, place) whose mean paired difference to supervised is ≤ 0."""
    lines = []
    for _, row in _against_supervised(paired).iterrows():
        if row["mean_diff"] <= 0:
            arm = ARM_LABELS.get(row["arm"], row["arm"])
            lines.append(
                f"{method_label(row['method'])} · {arm} did not beat supervised on {_where(row)}:"
                f" Δ {row['mean_diff']:+.3f} ({_p(row)}n={int(row['n'])})"
            )
    return lines


def best_pretraining(paired: pd.DataFrame) -> list[str]:
    """Per arm and place: the pretraining with the best mean score, against supervised."""
    rows = _against_supervised(paired)
    lines = []
    for _, part in rows.groupby(list(PLACE), sort=True, dropna=False):
        best = part.loc[part["mean_method"].idxmax()]
        arm = ARM_LABELS.get(best["arm"], best["arm"])
        verdict = "" if best["mean_diff"] > 0 else "; none beat supervised"
        lines.append(
            f"best pretraining for the {arm} on {_where(best)}: {method_label(best['method'])} "
            f"{best['mean_method']:.3f} (supervised {best['mean_baseline']:.3f}, Δ "
            f"{best['mean_diff']:+.3f}, {_p(best)}n={int(best['n'])}){verdict}"
        )
    return lines
