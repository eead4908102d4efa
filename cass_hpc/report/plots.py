"""PNG charts of a grid: results bars, pretraining curves, fine-tuning curves, timing bars.

Drawn with matplotlib's object API (``matplotlib.figure.Figure``: no pyplot, no display, the
Agg renderer) and written atomically (temporary name, then rename). Every function takes the
frames the tables use and returns the path written, or None when there is nothing to draw.

Example:
    >>> results_bars(rows, "micro_f1", "brain_mri", Path("summary/plots/brain_mri_results.png"))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cass_hpc import store
from cass_hpc.report.format import (
    ARM_LABELS,
    ARM_ORDER,
    METHOD_ORDER,
    format_fraction,
    method_label,
)

# per method (seaborn "deep"); CASS+ red, apart from CASS's orange
COLOURS = {"dino": "#4C72B0", "cass": "#DD8452", "cass_plus": "#8172B3", "supervised": "#55A868",
           "simclr": "#C44E52", "vicreg": "#DA8BC3", "byol": "#8C8C8C",
           "mae": "#CCB974"}  # fmt: skip
OTHER_COLOUR = "#937860"
HATCHES = {"cnn": "", "vit": "//", "val_selected": "..", "ensemble": "xx"}  # per arm
SEED_STYLES = ("-", "--", ":", "-.")  # per seed, in the curves
DPI = 100


_SEED_MARKERS = ("o", "s", "^", "v", "D", "x")


def _colour(method: str) -> str:
    return COLOURS.get(method, OTHER_COLOUR)


def save(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as a PNG to ``path`` atomically and return ``path``."""
    store.atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI))
    return path


def _rows_in_order(rows: pd.DataFrame) -> list[tuple[str, str, str]]:
    keys = rows[["setting", "method", "arm"]].drop_duplicates().itertuples(index=False, name=None)
    return sorted(keys, key=lambda k: (k[0], ARM_ORDER.get(k[2], 9), METHOD_ORDER.get(k[1], 9)))


def results_bars(rows: pd.DataFrame, metric: str, title: str, path: Path) -> Path | None:
    """Grouped bars of one (experiment, dataset): groups = label fractions, one bar per method ×
    arm (colour = method, hatched = ViT), height = mean, error bar = std over seeds."""
    rows = rows.dropna(subset=["mean"])
    if rows.empty:
        return None
    fractions = sorted(rows["label_fraction"].unique())
    bars = _rows_in_order(rows)
    width = 0.8 / len(bars)
    figure = Figure(figsize=(max(6.0, 1.2 + 0.5 * len(bars) * len(fractions)), 4.2))
    axes = figure.subplots()
    x = np.arange(len(fractions))
    for i, (setting, method, arm) in enumerate(bars):
        mine = rows[
            (rows["setting"] == setting) & (rows["method"] == method) & (rows["arm"] == arm)
        ]
        by_fraction = mine.set_index("label_fraction")
        heights = [by_fraction["mean"].get(f, math.nan) for f in fractions]
        errors = [by_fraction["std"].get(f, math.nan) for f in fractions]
        label = f"{method_label(method)} · {ARM_LABELS.get(arm, arm)}" + (
            f" · {setting}" if setting else ""
        )
        axes.bar(
            x - 0.4 + width * (i + 0.5), np.nan_to_num(heights), width,
            yerr=np.nan_to_num(errors), capsize=3, color=_colour(method),
            hatch=HATCHES.get(arm, ".."), edgecolor="black", linewidth=0.5, label=label,
        )  # fmt: skip
    axes.set_xticks(x, [format_fraction(f) for f in fractions])
    axes.set_xlabel("label fraction")
    axes.set_ylabel(f"test {metric} (mean ± std over seeds)")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return save(figure, path)


def pretrain_curves(runs: pd.DataFrame, title: str, path: Path) -> Path | None:
    """Per pretraining run (one line per method · seed · setting): loss per epoch (left), each
    net's output spread per epoch (middle; near 0 = collapsed) and each net's k-NN health score
    on the validation split per scored epoch (right; a dotted line at chance, ``cass_hpc.knn``),
    its first point at epoch 0, the starting weights (a run recorded before epoch 0 was scored
    starts at its first scored epoch). A run from before the k-NN monitor has no line there."""
    runs = runs[runs["pretrain_loss"].map(lambda v: isinstance(v, list) and len(v) > 0)]
    if runs.empty:
        return None
    figure = Figure(figsize=(16.0, 4.0))
    loss_axes, spread_axes, knn_axes = figure.subplots(1, 3)
    order = runs.assign(_m=runs["method"].map(lambda m: METHOD_ORDER.get(m, 9)))
    for run in order.sort_values(["_m", "setting", "seed", "arm"]).itertuples(index=False):
        spread = run.pretrain_spread or {}
        knn = run.pretrain_knn if isinstance(run.pretrain_knn, dict) else {}
        # a run that trained one net (DINO: one per backbone) is named by it; the record says so
        per_arm = len(spread or knn) == 1
        name = f"{method_label(run.method)}{f' {run.arm}' if per_arm else ''} s{run.seed}" + (
            f" {run.setting}" if run.setting else ""
        )
        epochs = range(1, len(run.pretrain_loss) + 1)
        marker = _SEED_MARKERS[int(run.seed) % len(_SEED_MARKERS)]  # seeds apart at one colour
        loss_axes.plot(epochs, run.pretrain_loss, marker=marker, color=_colour(run.method),
                       label=name)  # fmt: skip
        for arm, values in spread.items():
            if values:
                style = "-" if arm == "cnn" else "--"
                spread_axes.plot(range(1, len(values) + 1), values, style, marker=marker,
                                 color=_colour(run.method), label=f"{name} {arm}")  # fmt: skip
        for arm, values in knn.items():  # parsed: one score per entry of pretrain_knn_epochs
            style = "-" if arm == "cnn" else "--"
            knn_axes.plot(run.pretrain_knn_epochs, values, style, marker=marker,
                          color=_colour(run.method), label=f"{name} {arm}")  # fmt: skip
            final = getattr(run, f"pretrain_knn_final_{arm}", None)  # what fine-tuning got
            if isinstance(final, int | float) and math.isfinite(final) and run.pretrain_knn_epochs:
                knn_axes.plot([max(run.pretrain_knn_epochs) + 0.5], [final], "*", markersize=9,
                              color=_colour(run.method))  # fmt: skip
    loss_axes.set(xlabel="pretraining epoch", ylabel="loss (mean per epoch)", title="loss")
    spread_axes.set(xlabel="pretraining epoch", ylabel="output spread (0 = collapsed)",
                    title="output spread per net (— CNN, -- ViT)")  # fmt: skip
    if spread_axes.lines and all(min(line.get_ydata()) > 0 for line in spread_axes.lines):
        spread_axes.set_yscale("log")
    if knn_axes.lines:
        _chance_lines(knn_axes, runs)
    knn_axes.set(xlabel="pretraining epoch (0 = the starting weights)",
                 ylabel="balanced accuracy (— CNN, -- ViT)",
                 title="k-NN (validation, leave-one-out; ★ handed to fine-tuning)")  # fmt: skip
    for axes in (loss_axes, spread_axes, knn_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axes.lines:
            axes.legend(fontsize=6)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return save(figure, path)


def _chance_lines(axes: Axes, runs: pd.DataFrame) -> None:
    """A dotted line at each chance level of the runs' k-NN monitor (one per validation split;
    none when no run recorded one), labelled "chance" once."""
    levels = sorted(pd.to_numeric(runs["pretrain_knn_chance"], errors="coerce").dropna().unique())
    for i, level in enumerate(levels):
        axes.axhline(level, linestyle=":", color="grey", linewidth=1.0,
                     label="chance" if i == 0 else None)  # fmt: skip


def _curve(history: object, key: str) -> list[float]:
    if not isinstance(history, list):
        return []
    values = [h.get(key) for h in history if isinstance(h, dict)]
    numbers = [float(v) if isinstance(v, int | float) else math.nan for v in values]
    return numbers if any(math.isfinite(v) for v in numbers) else []


def finetune_curves(cells: pd.DataFrame, metric: str, title: str, path: Path) -> Path | None:
    """Validation curves of every cell of one (experiment, dataset): one panel per arm ×
    fraction, one line per method · seed (colour = method); ``val_<metric>`` per epoch, or the
    validation loss where the history does not record that metric."""
    key = f"val_{metric}"
    key = key if cells["history"].map(lambda h: bool(_curve(h, key))).any() else "val_loss"
    cells = cells[cells["history"].map(lambda h: bool(_curve(h, key)))]
    if cells.empty:
        return None
    arms = sorted(cells["arm"].unique(), key=lambda a: (ARM_ORDER.get(a, 9), a))
    fractions = sorted(cells["label_fraction"].unique())
    figure = Figure(figsize=(3.6 * len(fractions) + 1.0, 2.8 * len(arms) + 0.6))
    grid = np.atleast_2d(figure.subplots(len(arms), len(fractions), squeeze=False))
    for r, arm in enumerate(arms):
        for c, fraction in enumerate(fractions):
            axes = grid[r, c]
            panel = cells[(cells["arm"] == arm) & (cells["label_fraction"] == fraction)]
            panel = panel.assign(_m=panel["method"].map(lambda m: METHOD_ORDER.get(m, 9)))
            for cell in panel.sort_values(["_m", "setting", "seed"]).itertuples(index=False):
                values = _curve(cell.history, key)
                label = f"{method_label(cell.method)} s{cell.seed}" + (
                    f" {cell.setting}" if cell.setting else ""
                )
                style = SEED_STYLES[int(cell.seed) % len(SEED_STYLES)]
                axes.plot(range(1, len(values) + 1), values, style, color=_colour(cell.method),
                          alpha=0.8, label=label)  # fmt: skip
            axes.set_title(f"{ARM_LABELS.get(arm, arm)} · {format_fraction(fraction)}", fontsize=9)
            axes.set_xlabel("fine-tuning epoch", fontsize=8)
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            axes.set_ylabel(key, fontsize=8)
            if axes.lines:
                axes.legend(fontsize=6)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return save(figure, path)


def timing_bars(timing: pd.DataFrame, title: str, path: Path) -> Path | None:
    """Paper Table 1 as bars: per dataset DINO (CNN + ViT) vs CASS cumulative pretraining time."""
    timing = timing[(timing["dino_runs"] > 0) | (timing["cass_runs"] > 0)]
    if timing.empty:
        return None
    largest = float(np.nanmax(timing[["dino_s", "cass_s"]].to_numpy(dtype=float)))
    scale, unit = (
        (3600.0, "h") if largest >= 7200 else (60.0, "min") if largest >= 120 else (1.0, "s")
    )
    figure = Figure(figsize=(max(5.0, 1.5 + 1.4 * len(timing)), 4.0))
    axes = figure.subplots()
    x = np.arange(len(timing))
    for offset, method, column in ((-0.2, "dino", "dino_s"), (0.2, "cass", "cass_s")):
        axes.bar(x + offset, np.nan_to_num(timing[column].to_numpy(dtype=float) / scale), 0.4,
                 color=_colour(method), label=method_label(method))  # fmt: skip
    for i, (ratio, cass_s) in enumerate(zip(timing["ratio"], timing["cass_s"], strict=True)):
        if pd.notna(ratio):
            axes.annotate(f"CASS/DINO {ratio:.2f}", (x[i] + 0.2, cass_s / scale), xytext=(0, 3),
                          textcoords="offset points", ha="center", fontsize=8)  # fmt: skip
    axes.set_xticks(x, list(timing["dataset"].astype(str)))
    axes.set_ylabel(f"cumulative pretraining time ({unit})")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return save(figure, path)


def guarded(draw: Callable[[], Path | None], warn: Callable[[str], None], what: str) -> Path | None:
    """Run one plot; a failure is reported through ``warn`` and never stops the collector."""
    try:
        return draw()
    except Exception as error:  # a plot must never cost the user the tables
        warn(f"plot {what} not written: {type(error).__name__}: {error}")
        return None
