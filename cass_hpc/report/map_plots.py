"""PNGs of what fine-tuned nets look at (``cass_hpc.maps``): their maps and their embeddings.

- :func:`maps_figure`: one row per method (paper order), the mean input image then each map of
  :mod:`cass_hpc.probes` (CASS §5.6.6 Figures 3-4, App. E Figures 6-13), each panel on its own
  colour scale; a net without such maps shows why in its row.
- :func:`embeddings_figure`: rows methods × columns arms, each net's test embeddings projected
  to 2-D (PCA, or UMAP when the ``umap`` package is installed), coloured by class, one legend of
  class names.

Drawn with matplotlib's object API (Agg, no pyplot) and written atomically (:func:`plots.save`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cass_hpc.probes import ATTENTION, Maps
from cass_hpc.report.format import (
    ARM_LABELS,
    ARM_ORDER,
    METHOD_ORDER,
    format_fraction,
    method_label,
)
from cass_hpc.report.plots import save

if TYPE_CHECKING:
    from cass_hpc.maps import Cell

PROJECTIONS = ("pca", "umap")
PANEL_IN = 1.9  # side of one map panel, inches (DPI 100: 190 px)
COLOURMAPS = {ATTENTION: "inferno"}  # feature maps: viridis
NO_LABEL = "(no label)"  # multi-label images without a positive label


def umap_available() -> bool:
    """Whether the optional ``umap`` package (umap-learn) can be imported."""
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def group_title(
    dataset: str, setting: str, label_fraction: float, seed: int, split_seed: int | None = None
) -> str:
    """``brain_mri · 10% labels · seed 0`` (+ the re-drawn split and the ablation setting)."""
    split = f" · split {split_seed}" if split_seed is not None else ""
    extra = f" · {setting}" if setting else ""
    return f"{dataset} · {format_fraction(label_fraction)} labels · seed {seed}{split}{extra}"


def _row_label(cell: Cell) -> str:
    return f"{method_label(cell.method)}\n{cell.record['backbone']}"


def maps_size(rows: int, columns: int) -> tuple[float, float]:
    """The figure size (inches) of a maps figure with ``rows`` nets and ``columns`` panels."""
    return max(PANEL_IN * columns + 0.7, 6.4), PANEL_IN * rows + 1.3  # 6.4: the title fits


def maps_figure(
    rows: Sequence[tuple[Cell, Maps]], mean_input: np.ndarray, samples: int, title: str, path: Path
) -> Path:
    """One arm's maps: a row per method (its net's :class:`Maps`), the first column the mean
    of the ``samples`` input images (H, W, 3 in [0, 1])."""
    columns = 1 + max(max(len(maps.names) for _, maps in rows), 1)
    figure = Figure(figsize=maps_size(len(rows), columns))
    grid = figure.subplots(len(rows), columns, squeeze=False)
    kinds = {maps.kind for _, maps in rows if maps.names}
    layouts = {maps.names for _, maps in rows if maps.names}
    for r, (cell, maps) in enumerate(rows):
        axes = grid[r]
        axes[0].imshow(np.clip(mean_input, 0, 1))
        axes[0].set_ylabel(_row_label(cell), fontsize=9)
        if r == 0:
            axes[0].set_title(f"input (mean of {samples})", fontsize=8)
        for c, (name, image, (h, w)) in enumerate(
            zip(maps.names, maps.maps, maps.sizes, strict=True), start=1
        ):
            _show_map(axes[c], image, COLOURMAPS.get(maps.kind, "viridis"))
            if r == 0 or len(layouts) > 1:  # one title per column when every row has the same
                axes[c].set_title(f"{name} ({h}×{w})", fontsize=8)
        if maps.message:
            _message(axes[1], maps.message)
        for panel in axes:
            panel.set_xticks([])
            panel.set_yticks([])
        for panel in axes[1 + len(maps.names) + bool(maps.message) :]:
            panel.set_axis_off()
    what = {
        ATTENTION: "class attention of the first attention block (mean over heads)",
        "feature": "feature maps after the first convolution and stages (channel mean)",
    }
    shown = " / ".join(what[k] for k in sorted(kinds)) or "no maps"
    arm = ARM_LABELS.get(rows[0][0].arm, rows[0][0].arm)
    lines = [title, f"{arm} arm: {shown}",
             f"averaged over {samples} test images (stratified); colour: each panel's own "
             "min → max"]  # fmt: skip
    _suptitle(figure, lines)
    figure.tight_layout()
    return save(figure, path)


def _suptitle(figure: Figure, lines: Sequence[str]) -> None:
    """A 9 pt title of ``lines``, each wrapped to the figure's width."""
    width = int(figure.get_figwidth() * 14)  # characters of 9 pt text per inch
    figure.suptitle("\n".join(textwrap.fill(line, width) for line in lines), fontsize=9)


def _show_map(axes: Axes, image: np.ndarray, cmap: str) -> None:
    """A map on its own colour scale; a constant one (e.g. a 1×1 stage) in one flat colour
    rather than its float noise stretched to the full scale."""
    spread = float(np.ptp(image))
    if spread <= 1e-5 * (float(np.abs(image).max()) + 1e-12):
        axes.imshow(np.zeros_like(image), cmap=cmap, vmin=-1, vmax=1)
        axes.text(0.5, 0.5, "constant", ha="center", va="center", fontsize=7,
                  transform=axes.transAxes, color="white")  # fmt: skip
    else:
        axes.imshow(image, cmap=cmap)


def _message(axes: Axes, message: str) -> None:
    """A net without maps: its reason, wrapped, in place of the maps."""
    axes.text(0.02, 0.5, textwrap.fill(message, 28), fontsize=7, va="center", ha="left",
              transform=axes.transAxes, color="firebrick")  # fmt: skip


def project(features: np.ndarray, projection: str, seed: int) -> tuple[np.ndarray, list[str]]:
    """``features`` (n, D) → (n, 2) and the two axis labels (PCA: with % variance explained).
    Fewer than 3 images or a constant embedding give zeros (nothing to spread)."""
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    features = np.nan_to_num(np.asarray(features, dtype=np.float64))
    if len(features) < 3 or not np.ptp(features, axis=0).any():
        return np.zeros((len(features), 2)), ["(constant)", "(constant)"]
    if projection == "umap":
        import umap

        neighbours = max(2, min(15, len(features) - 1))
        reducer = umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed)
        return np.asarray(reducer.fit_transform(features)), ["UMAP 1", "UMAP 2"]
    centred = features - features.mean(axis=0)  # PCA by SVD (no scikit-learn import: ~s)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    ratios = list((singular**2 / (singular**2).sum())[:2])
    if points.shape[1] < 2:  # a 1-D embedding
        points, ratios = np.column_stack([points, np.zeros(len(points))]), [*ratios, 0.0]
    return points, [f"PC {i + 1} ({100 * r:.0f} % var.)" for i, r in enumerate(ratios)]


def _class_colours(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def embeddings_figure(
    embeddings: Sequence[tuple[Cell, np.ndarray, np.ndarray]],
    classes: Sequence[str],
    projection: str,
    seed: int,
    title: str,
    path: Path,
) -> Path:
    """Rows methods × columns arms: each net's embeddings ((n, D), with class index per image,
    -1 = no label) projected to 2-D and coloured by class; a legend of class names."""
    methods = sorted({cell.method for cell, _, _ in embeddings},
                     key=lambda m: (METHOD_ORDER.get(m, 9), m))  # fmt: skip
    arms = sorted({cell.arm for cell, _, _ in embeddings}, key=lambda a: (ARM_ORDER.get(a, 9), a))
    figure = Figure(figsize=(3.4 * len(arms) + 1.5, 3.0 * len(methods) + 1.0))
    grid = figure.subplots(len(methods), len(arms), squeeze=False)
    colours = _class_colours(len(classes))
    present: set[int] = set()
    for panel in grid.flat:
        panel.set_axis_off()  # a method without one of the arms leaves its panel empty
    for cell, features, labels in embeddings:
        axes = grid[methods.index(cell.method), arms.index(cell.arm)]
        axes.set_axis_on()
        points, axis_labels = project(features, projection, seed)
        for k in np.unique(labels):
            mine = labels == k
            colour = colours[int(k)] if k >= 0 else "lightgrey"
            size = 14 if len(labels) < 500 else 5
            axes.scatter(points[mine, 0], points[mine, 1], s=size, color=colour, alpha=0.8,
                         linewidths=0)  # fmt: skip
            present.add(int(k))
        axes.set_title(
            f"{method_label(cell.method)} · {ARM_LABELS.get(cell.arm, cell.arm)} "
            f"({cell.record['backbone']}), n={len(labels)}",
            fontsize=8,
        )
        axes.set_xlabel(axis_labels[0], fontsize=7)
        axes.set_ylabel(axis_labels[1], fontsize=7)
        axes.tick_params(labelsize=6)
    names = [*classes, NO_LABEL]
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color=colours[k] if k >= 0 else "lightgrey",
            label=names[k],
        )  # fmt: skip
        for k in sorted(present)
    ]
    figure.legend(handles=handles, title="class", fontsize=7, title_fontsize=8,
                  loc="center right")  # fmt: skip
    _suptitle(figure, [title, "test embeddings (pooled features before the classifier), "
                      f"{projection.upper()} per net"])  # fmt: skip
    figure.tight_layout(rect=(0, 0, 1 - 1.3 / figure.get_figwidth(), 1))
    return save(figure, path)
