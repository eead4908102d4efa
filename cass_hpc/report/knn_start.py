"""The starting weights as the yardstick: each net's k-NN score before and after pretraining.

The k-NN health monitor (``cass_hpc.knn``) scores every trained net on the validation split
before the first pretraining step (epoch 0: the weights pretraining starts from) and then the
weights it hands to fine-tuning (``knn_final``). Per (experiment, dataset, setting, method) and
arm the collector shows ``start → end``, means over the pretraining runs that recorded both (a
record made before epoch 0 was scored shows ``—`` for the start and counts for neither), and
says so in one line when the mean end is below the mean start: pretraining made that net's
features worse than the weights it started from.

Example:
    >>> columns = start_end(pretrain_runs(frame), keys)   # knn_start_cnn_mean, knn_end_cnn_mean, …
    >>> worse_than_start(pretrain_summary(frame))
    ["pretraining made the CNN's features worse: 0.62 → 0.55 (k-NN, dino on digits, 3 seeds)"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from cass_hpc.report.format import ARM_LABELS, MISSING

ARMS = ("cnn", "vit")
# per arm: the mean epoch-0 score, the mean end score of the same runs, and their seeds
START_COLUMNS = tuple(
    f"knn_{what}_{arm}_{stat}"
    for arm in ARMS
    for what, stat in (("start", "mean"), ("end", "mean"), ("start", "seeds"))
)


def start_end(runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per group of ``keys`` of the pretraining runs (one row per run, see
    ``timing.pretrain_runs``) and per arm: ``knn_start_<arm>_mean`` (epoch 0),
    ``knn_end_<arm>_mean`` (``knn_final``, the weights handed to fine-tuning) over the runs that
    have both, and ``knn_start_<arm>_seeds`` (how many seeds those runs are)."""
    columns: dict[str, pd.Series] = {}
    for arm in ARMS:
        start, end = f"pretrain_knn_start_{arm}", f"pretrain_knn_final_{arm}"
        both = runs[runs[start].notna() & runs[end].notna()].groupby(list(keys))
        columns[f"knn_start_{arm}_mean"] = both[start].mean()
        columns[f"knn_end_{arm}_mean"] = both[end].mean()
        columns[f"knn_start_{arm}_seeds"] = both["seed"].nunique().astype("Int64")
    return pd.DataFrame(columns)[list(START_COLUMNS)]


def _pair(start: float, end: float) -> str:
    """Two decimals, three where two would print two different scores as equal."""
    digits = 3 if start != end and f"{start:.2f}" == f"{end:.2f}" else 2
    return f"{start:.{digits}f} → {end:.{digits}f}"


def format_start_end(item: Any, arm: str) -> str:
    """``0.31 → 0.52`` for one arm of a :func:`timing.pretrain_summary` row; ``— → 0.52`` for
    runs without an epoch-0 score (the end then over all runs: the ``knn_final`` mean);
    ``—`` for an arm without a k-NN score."""
    start = getattr(item, f"knn_start_{arm}_mean")
    if pd.notna(start):
        return _pair(float(start), float(getattr(item, f"knn_end_{arm}_mean")))
    end = getattr(item, f"knn_final_{arm}_mean")
    return MISSING if pd.isna(end) else f"{MISSING} → {float(end):.2f}"


def worse_than_start(summary: pd.DataFrame) -> list[str]:
    """One line per row of :func:`timing.pretrain_summary` and arm whose mean end k-NN score is
    below its mean start: ``pretraining made the CNN's features worse: 0.62 → 0.55 (k-NN, dino
    on digits, 3 seeds)``."""
    lines = []
    for item in summary.itertuples(index=False):
        setting = f" [{item.setting}]" if item.setting else ""
        for arm in ARMS:
            start = getattr(item, f"knn_start_{arm}_mean")
            end = getattr(item, f"knn_end_{arm}_mean")
            if pd.isna(start) or pd.isna(end) or not end < start:
                continue
            seeds = int(getattr(item, f"knn_start_{arm}_seeds"))
            where = f"{item.method} on {item.dataset}{setting}"
            lines.append(
                f"pretraining made the {ARM_LABELS.get(arm, arm)}'s features worse: "
                f"{_pair(float(start), float(end))} (k-NN, {where}, {seeds} "
                f"seed{'' if seeds == 1 else 's'})"
            )
    return lines
