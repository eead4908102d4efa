"""Pretraining wall time: per method and seed, and the paper's Table 1 (DINO vs CASS).

A pretraining run is shared by many cells (CASS: both arms and every label fraction of a seed;
DINO: every fraction of one arm and seed), so every function here counts each distinct
``pretrain.key`` once. Paper Table 1 compares the cumulative time to pretrain a CNN and a
Transformer: DINO needs one run per backbone (CNN + ViT), CASS one run for both.

Example:
    >>> table1 = timing_frame(frame)        # per (experiment, dataset): DINO s, CASS s, ratio
    >>> time_saving(table1)                 # mean over datasets of 1 - CASS/DINO
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from cass_hpc.report.format import (
    MISSING,
    format_duration,
    method_label,
    paper_order,
)
from cass_hpc.report.knn_start import START_COLUMNS, format_start_end, start_end
from cass_hpc.report.records import TABLE_COLUMNS
from cass_hpc.report.tables import Table

GROUP = (*TABLE_COLUMNS, "setting")
PRETRAIN_COLUMNS = (
    *GROUP, "method", "seeds", "runs", "runs_per_seed_min", "runs_per_seed_max",
    "wall_s_total", "wall_s_mean", "wall_s_std", "images_per_s_mean", "final_loss_mean",
    "final_spread_cnn_mean", "final_spread_vit_mean", "knn_final_cnn_mean",
    "knn_final_vit_mean", "knn_chance", "knn_s_mean", *START_COLUMNS,
)  # fmt: skip
TIMING_COLUMNS = (
    *TABLE_COLUMNS, "dino_s", "cass_s", "dino_seeds", "cass_seeds", "dino_runs", "cass_runs",
    "dino_complete", "ratio",
)  # fmt: skip


def pretrain_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct pretraining run (``pretrain.key``) per (experiment, dataset,
    setting, method, seed); ``method`` is the pretraining's method."""
    runs = frame.dropna(subset=["pretrain_key"]).sort_values("created", kind="stable")
    subset = [*GROUP, "pretrain_method", "seed", "pretrain_key"]
    runs = runs.drop_duplicates(subset=subset, keep="last")
    return runs.drop(columns="method").rename(columns={"pretrain_method": "method"})


def pretrain_per_seed(frame: pd.DataFrame) -> pd.DataFrame:
    """Cumulative pretraining wall time per (experiment, dataset, setting, method, seed).

    Sums ``pretrain.wall_s`` over the DISTINCT ``pretrain.key`` values of that seed's cells:
    CASS's one run shared by both arms and all fractions counts once; DINO's one run per arm
    counts both (paper Table 1, "DINO CNN+ViT vs CASS"). Columns: ..., seed, wall_s, runs.
    """
    runs = pretrain_runs(frame)
    grouped = runs.groupby([*GROUP, "method", "seed"], sort=True)
    per_seed = grouped.agg(wall_s=("pretrain_wall_s", "sum"), runs=("pretrain_key", "nunique"))
    return per_seed.reset_index()


def pretrain_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (experiment, dataset, setting, method): seeds, runs, total and per-seed mean/std
    wall time, images/s, final loss, each net's final output spread and, from the k-NN health
    monitor (``cass_hpc.knn``), each net's score as handed to fine-tuning, the chance level,
    the monitor's seconds per run (not in the wall time) and each net's score start → end
    (``knn_start.start_end``); means over the runs that have them."""
    per_seed = pretrain_per_seed(frame)
    if per_seed.empty:
        return pd.DataFrame(columns=list(PRETRAIN_COLUMNS))
    keys = [*GROUP, "method"]
    summary = per_seed.groupby(keys).agg(
        seeds=("seed", "nunique"),
        runs=("runs", "sum"),
        runs_per_seed_min=("runs", "min"),
        runs_per_seed_max=("runs", "max"),
        wall_s_total=("wall_s", "sum"),
        wall_s_mean=("wall_s", "mean"),
        wall_s_std=("wall_s", "std"),
    )
    each = pretrain_runs(frame)
    runs = each.groupby(keys)
    summary["images_per_s_mean"] = runs["pretrain_images_per_s"].mean()
    summary["final_loss_mean"] = runs["pretrain_final_loss"].mean()
    summary["final_spread_cnn_mean"] = runs["pretrain_final_spread_cnn"].mean()
    summary["final_spread_vit_mean"] = runs["pretrain_final_spread_vit"].mean()
    summary["knn_final_cnn_mean"] = runs["pretrain_knn_final_cnn"].mean()
    summary["knn_final_vit_mean"] = runs["pretrain_knn_final_vit"].mean()
    summary["knn_chance"] = runs["pretrain_knn_chance"].mean()  # one validation split: one value
    summary["knn_s_mean"] = runs["pretrain_knn_s"].mean()
    for column, values in start_end(each, keys).items():
        summary[column] = values
    return paper_order(summary.reset_index()).reset_index(drop=True)[list(PRETRAIN_COLUMNS)]


def _number(value: object) -> str:
    return MISSING if value is None or pd.isna(value) else f"{float(value):.4g}"


def _score(value: object) -> str:
    return MISSING if value is None or pd.isna(value) else f"{float(value):.2f}"


def format_knn(cnn: float | None, vit: float | None, chance: float | None) -> str:
    """``0.52 / 0.47 (0.25)``: the final k-NN score of the CNN / the ViT (chance level); ``—``
    for an arm without one, and alone when neither has one (a run before the monitor)."""
    if pd.isna(cnn) and pd.isna(vit):
        return MISSING
    scores = f"{_score(cnn)} / {_score(vit)}"
    return scores if chance is None or pd.isna(chance) else f"{scores} ({_score(chance)})"


def pretrain_table(summary: pd.DataFrame, title: str = "") -> Table:
    """Formatted pretraining-time table of ONE (experiment, dataset) of :func:`pretrain_summary`
    (seconds and every other figure are in pretrain_time.csv)."""
    rows = {}
    for item in summary.itertuples(index=False):
        low, high = int(item.runs_per_seed_min), int(item.runs_per_seed_max)
        spread = "" if item.seeds < 2 else f" ± {format_duration(item.wall_s_std)}"
        speed = item.images_per_s_mean
        rows[_row_label(item)] = {
            "Time per seed (mean ± std)": format_duration(item.wall_s_mean) + spread,
            "Total (all seeds)": format_duration(item.wall_s_total),
            "Runs per seed": str(low) if low == high else f"{low}–{high}",
            "Images/s": MISSING if pd.isna(speed) else f"{speed:.1f}",
            "Seeds": f"n={item.seeds}",
        }
    return _table(rows, title)


def pretrain_health_table(summary: pd.DataFrame, title: str = "") -> Table:
    """What each pretraining handed to fine-tuning, for ONE (experiment, dataset): final loss,
    each net's output spread and k-NN score (the health monitor; chance in brackets), and each
    net's k-NN score start → end (the starting weights, then those handed to fine-tuning)."""
    rows = {}
    for item in summary.itertuples(index=False):
        rows[_row_label(item)] = {
            "Final loss": _number(item.final_loss_mean),
            "Final spread CNN / ViT": (
                f"{_number(item.final_spread_cnn_mean)} / {_number(item.final_spread_vit_mean)}"
            ),
            "k-NN CNN / ViT (chance)": format_knn(
                item.knn_final_cnn_mean, item.knn_final_vit_mean, item.knn_chance
            ),
            "Monitor s": MISSING if pd.isna(item.knn_s_mean) else f"{item.knn_s_mean:.1f}",
            "k-NN CNN start → end": format_start_end(item, "cnn"),
            "k-NN ViT start → end": format_start_end(item, "vit"),
        }
    return _table(rows, title)


def _row_label(item: Any) -> str:
    return method_label(item.method) + (f" · {item.setting}" if item.setting else "")


def _table(rows: dict[str, dict[str, str]], title: str) -> Table:
    cells = pd.DataFrame.from_dict(rows, orient="index", dtype=object)
    cells.index.name = "Method"
    return Table(title=title, cells=cells)


def timing_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 1 per (experiment, dataset), from the cells without a swept setting.

    ``dino_s`` / ``cass_s``: cumulative pretraining wall time, every distinct pretraining key
    counted once and summed over seeds (DINO: its CNN and its ViT runs; CASS: one run for both).
    ``ratio``: CASS / DINO of the per-seed means (the ratio of the sums when both ran the same
    seeds). ``dino_complete``: every DINO seed has its CNN and its ViT run.
    """
    runs = pretrain_runs(frame[frame["setting"] == ""]) if len(frame) else pd.DataFrame()
    rows = []
    if runs.empty:
        return pd.DataFrame(columns=list(TIMING_COLUMNS))
    for (experiment, dataset), part in runs.groupby(list(TABLE_COLUMNS), sort=True):
        row: dict[str, object] = {"experiment": experiment, "dataset": dataset}
        for method in ("dino", "cass"):
            mine = part[part["method"] == method]
            row[f"{method}_s"] = float(mine["pretrain_wall_s"].sum()) if len(mine) else math.nan
            row[f"{method}_seeds"] = int(mine["seed"].nunique())
            row[f"{method}_runs"] = len(mine)
        dino = part[part["method"] == "dino"]
        row["dino_complete"] = bool(len(dino)) and bool(
            (dino.groupby("seed")["pretrain_key"].nunique() >= 2).all()
        )
        per_seed = {m: row[f"{m}_s"] / row[f"{m}_seeds"] if row[f"{m}_seeds"] else math.nan
                    for m in ("dino", "cass")}  # fmt: skip
        row["ratio"] = per_seed["cass"] / per_seed["dino"] if per_seed["dino"] else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=list(TIMING_COLUMNS))


def time_saving(timing: pd.DataFrame) -> float:
    """Mean over datasets of ``1 - CASS/DINO``: the paper's "CASS takes 69 % less time" (§5.1).

    From the paper's own Table 1 this is 0.697 (the paper writes 69 %); NaN without a ratio.
    """
    ratios = pd.to_numeric(timing["ratio"], errors="coerce").dropna()
    return float((1 - ratios).mean()) if len(ratios) else math.nan


def format_ratio(ratio: float | None) -> str:
    """``0.29`` (CASS / DINO); ``—`` if unknown."""
    return MISSING if ratio is None or not math.isfinite(ratio) else f"{ratio:.2f}"


def timing_table(timing: pd.DataFrame, title: str = "") -> Table:
    """Paper Table 1 for ONE experiment of :func:`timing_frame`: rows datasets, columns DINO
    (CNN + ViT), CASS (both arms), CASS / DINO and the seeds each was summed over."""
    rows = {}
    for item in timing.itertuples(index=False):
        dino = format_duration(item.dino_s) + ("" if item.dino_complete else " (incomplete)")
        rows[str(item.dataset)] = {
            "DINO (CNN + ViT)": dino if item.dino_runs else MISSING,
            "CASS (both arms)": format_duration(item.cass_s),
            "CASS / DINO": format_ratio(item.ratio),
            "Seeds DINO / CASS": f"{item.dino_seeds} / {item.cass_seeds}",
        }
    cells = pd.DataFrame.from_dict(rows, orient="index", dtype=object)
    cells.index.name = "Dataset"
    return Table(title=title, cells=cells)
