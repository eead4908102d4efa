"""A task's results page (``collect --page DIR``): which pretraining wins, on one screen.

One row per method and arm of an (experiment, dataset) at each label fraction: the fine-tuned
test score (mean ± std over seeds), the paired difference to the supervised twin on the same
split, seed and labelled subset with its t-test p (:mod:`.paired`), the net's k-NN score on the
validation split before pretraining (the starting weights, epoch 0) and after it (the weights
handed to fine-tuning; a supervised cell has only its start), and the pretraining time per seed
behind that arm's weights. Under the table the collector's verdict lines for this task
(:mod:`.verdict`, :mod:`.knn_start`), and one PNG: the scores per arm beside the supervised line,
and each method's k-NN start → end beside the starting weights' score.

Example:
    >>> rows = page_rows(frame, report.summary, report.paired, {("elpv", "elpv"): "macro_f1"})
    >>> print(page_markdown(rows, lines, "elpv.png"))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cass_hpc.report.format import (
    ARM_LABELS,
    MISSING,
    format_duration,
    format_fraction,
    method_label,
    paper_order,
)
from cass_hpc.report.knn_start import worse_than_start
from cass_hpc.report.plots import COLOURS, OTHER_COLOUR, save
from cass_hpc.report.verdict import best_pretraining, not_above_supervised

ARMS = ("cnn", "vit")
PAGE_COLUMNS = (
    "experiment", "dataset", "label_fraction", "method", "arm", "backbone", "metric", "mean",
    "std", "n", "delta", "p", "pairs", "knn_start", "knn_end", "knn_seeds", "pretrain_s",
    "epochs", "seeds",
)  # fmt: skip


def _cell_knn(frame: pd.DataFrame) -> pd.DataFrame:
    """Per cell record: its own net's k-NN at the start (pretrained: its pretraining's epoch 0;
    supervised: the starting weights it fine-tuned from) and, when pretrained, at the end."""
    start = pd.Series(np.nan, index=frame.index)
    end = pd.Series(np.nan, index=frame.index)
    for arm in ARMS:
        mine = frame["arm"] == arm
        own = frame.get("knn_start_own", pd.Series(np.nan, index=frame.index))
        pretrained = frame.get(f"pretrain_knn_start_{arm}", pd.Series(np.nan, index=frame.index))
        start[mine] = pretrained[mine].where(frame.loc[mine, "pretrain_key"].notna(), own[mine])
        final = frame.get(f"pretrain_knn_final_{arm}", pd.Series(np.nan, index=frame.index))
        end[mine] = final[mine]
    both = start.notna() & (end.notna() | frame["pretrain_key"].isna())
    return frame.assign(knn_start=start.where(both), knn_end=end.where(both))


def page_rows(
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    paired: pd.DataFrame,
    metrics: Mapping[tuple[str, str], str],
) -> pd.DataFrame:
    """The page's long form (:data:`PAGE_COLUMNS`), main grid only (no swept setting), CNN and
    ViT arms; ``metrics`` maps (experiment, dataset) to the metric shown."""
    cells = _cell_knn(frame[(frame["setting"] == "") & frame["arm"].isin(ARMS)])
    keys = ["experiment", "dataset", "label_fraction", "method", "arm"]
    rows = []
    for values, part in cells.groupby(keys, sort=True):
        where = dict(zip(keys, values, strict=True))
        metric = metrics.get((where["experiment"], where["dataset"]))
        if metric is None:
            continue
        stat = summary[
            (summary["metric"] == metric)
            & (summary["setting"] == "")
            & np.logical_and.reduce([summary[k] == v for k, v in where.items()])
        ]
        if stat.empty:
            continue
        test = _against_supervised(paired, where)
        with_knn = part.dropna(subset=["knn_start"])
        runs = part.dropna(subset=["pretrain_key"]).drop_duplicates(["seed", "pretrain_key"])
        rows.append(
            {
                **where,
                "backbone": str(part["backbone"].iloc[-1]),
                "metric": metric,
                "mean": float(stat["mean"].iloc[0]),
                "std": float(stat["std"].iloc[0]),
                "n": int(stat["n"].iloc[0]),
                "delta": test.get("mean_diff", math.nan),
                "p": test.get("p_t", math.nan),
                "pairs": test.get("n", 0),
                "knn_start": with_knn["knn_start"].mean(),
                "knn_end": with_knn["knn_end"].mean(),
                "knn_seeds": int(with_knn["seed"].nunique()),
                "pretrain_s": runs["pretrain_wall_s"].mean() if len(runs) else math.nan,
                "epochs": _epochs(part),
                "seeds": int(part["seed"].nunique()),
            }
        )
    if not rows:
        return pd.DataFrame(columns=list(PAGE_COLUMNS))
    return paper_order(pd.DataFrame(rows)).reset_index(drop=True)[list(PAGE_COLUMNS)]


def verdicts(
    paired: pd.DataFrame, pretrain: pd.DataFrame, experiment: str, dataset: str
) -> list[str]:
    """The collector's lines for one (experiment, dataset), main grid: every method · arm that
    did not beat supervised, every net pretraining made worse than its start, the best per arm."""

    def mine(frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty:
            return frame
        keep = (frame["experiment"] == experiment) & (frame["dataset"] == dataset)
        return frame[keep & (frame["setting"] == "")]

    tests = mine(paired)
    return [
        *not_above_supervised(tests),
        *worse_than_start(mine(pretrain)),
        *best_pretraining(tests),
    ]


def _against_supervised(paired: pd.DataFrame, where: Mapping[str, object]) -> dict[str, float]:
    if paired.empty or where["method"] == "supervised":
        return {}
    mine = paired[
        (paired["baseline"] == "supervised")
        & (paired["setting"] == "")
        & np.logical_and.reduce([paired[k] == v for k, v in where.items()])
    ]
    return {} if mine.empty else mine.iloc[0].to_dict()


def _epochs(part: pd.DataFrame) -> str:
    epochs = sorted({int(e) for e in part["pretrain_epochs"].dropna()})
    return ", ".join(map(str, epochs))


def _number(value: float, digits: int = 3) -> str:
    return MISSING if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _delta(row: pd.Series) -> str:
    if row["method"] == "supervised":
        return "(the yardstick)"
    if not math.isfinite(row["delta"]):
        return MISSING
    p = f", p={row['p']:.2g}" if math.isfinite(row["p"]) else ""
    return f"{row['delta']:+.3f}{p}"


def _knn(row: pd.Series) -> str:
    start, end = row["knn_start"], row["knn_end"]
    if not math.isfinite(start):
        return MISSING
    if row["method"] == "supervised" or not math.isfinite(end):
        return f"{start:.2f} (start)"
    return f"{start:.2f} → {end:.2f}"


def _markdown_table(rows: pd.DataFrame) -> list[str]:
    metric = str(rows["metric"].iloc[0])
    lines = [
        f"| Method | Arm (backbone) | test {metric} (mean ± std, n) | Δ vs supervised (paired) "
        "| k-NN start → end | pretraining per seed |",
        "| :--- | :--- | ---: | ---: | ---: | ---: |",
    ]
    for _, row in rows.iterrows():
        score = f"{_number(row['mean'])} ± {_number(row['std'])} (n={row['n']})"
        if row["method"] != "supervised" and row["delta"] > 0 and row["p"] < 0.05:
            score = f"**{score}**"
        time = format_duration(row["pretrain_s"]) if row["method"] != "supervised" else MISSING
        lines.append(
            f"| {method_label(row['method'])} | {ARM_LABELS[row['arm']]} ({row['backbone']}) "
            f"| {score} | {_delta(row)} | {_knn(row)} | {time} |"
        )
    return lines


def page_markdown(
    rows: pd.DataFrame,
    verdicts: Sequence[str],
    plot: str | None,
    command: str = "",
    settings: str = "",
) -> str:
    """The page of one (experiment, dataset): a table per label fraction, the verdict lines,
    the plot (``plot``: its file name beside the page), the overrides every cell (or one
    method's cells) ran with (``settings``) and how it was made."""
    experiment, dataset = rows["experiment"].iloc[0], rows["dataset"].iloc[0]
    epochs = sorted({e for e in rows["epochs"] if e})
    lines = [
        f"# {dataset}: which pretraining wins (experiment {experiment})",
        "",
        f"Seeds per cell: {int(rows['seeds'].max())}; pretraining epochs: "
        f"{', '.join(epochs) or MISSING}; backbones: "
        + ", ".join(
            f"{ARM_LABELS[arm]} {bb}"
            for arm, bb in rows[["arm", "backbone"]].drop_duplicates().itertuples(index=False)
        )
        + ".",
        "",
    ]
    if settings:
        lines += [f"Overrides: `{settings}`.", ""]
    for fraction, part in rows.groupby("label_fraction", sort=True):
        lines += [f"## {format_fraction(fraction)} of the labels", ""]
        lines += _markdown_table(part) + [""]
    lines += ["## Verdict", ""] + [f"- {line}" for line in verdicts] + [""]
    if plot:
        lines += [f"![{dataset}: scores and k-NN per method]({plot})", ""]
    lines += [
        "Score: the fine-tuned net's test metric, mean ± std (ddof 1) over seeds; bold where "
        "it beats supervised with p < 0.05. Δ: mean over seeds of (method − supervised), each "
        "pair on the same split, seed and labelled subset; p: two-sided paired t-test (df = "
        "n − 1), a rough guide at n = 3. k-NN: the net's k-NN score on the validation split "
        "before pretraining (its starting weights) → the weights fine-tuning got; supervised "
        "shows its starting weights' score. Pretraining per seed: the wall time of the run "
        "behind that arm's weights (CASS and CASS+ train both arms in one run).",
        "",
    ]
    if command:
        lines += [f"Made by `{command}`.", ""]
    return "\n".join(lines)


def page_plot(rows: pd.DataFrame, title: str, path: Path) -> Path | None:
    """Two panels per arm: the scores (bars, std as error bars, the supervised mean dashed) and
    the k-NN start → end (arrows; the supervised start dotted). The first label fraction."""
    rows = rows[rows["label_fraction"] == rows["label_fraction"].min()].dropna(subset=["mean"])
    if rows.empty:
        return None
    arms = [arm for arm in ARMS if (rows["arm"] == arm).any()]
    figure = Figure(figsize=(5.2 * len(arms), 7.0), layout="constrained")
    grid = figure.subplots(2, len(arms), squeeze=False)
    for column, arm in enumerate(arms):
        mine = rows[rows["arm"] == arm].reset_index(drop=True)
        _score_panel(grid[0][column], mine, arm)
        _knn_panel(grid[1][column], mine, arm)
    figure.suptitle(f"{title} at {format_fraction(float(rows['label_fraction'].iloc[0]))}")
    return save(figure, path)


def _score_panel(axes, rows: pd.DataFrame, arm: str) -> None:  # noqa: ANN001 (matplotlib Axes)
    y = np.arange(len(rows))
    colours = [COLOURS.get(m, OTHER_COLOUR) for m in rows["method"]]
    axes.barh(y, rows["mean"], xerr=rows["std"].fillna(0), color=colours, capsize=3)
    supervised = rows[rows["method"] == "supervised"]
    if not supervised.empty:
        axes.axvline(float(supervised["mean"].iloc[0]), color="black", linestyle="--", lw=1)
    axes.set_yticks(y, [method_label(m) for m in rows["method"]])
    axes.invert_yaxis()
    axes.set_xlabel(f"test {rows['metric'].iloc[0]} (mean ± std over seeds)")
    axes.set_title(f"{ARM_LABELS[arm]} ({rows['backbone'].iloc[0]}): fine-tuned")
    for i, row in rows.iterrows():
        if row["method"] != "supervised" and math.isfinite(row["delta"]):
            p = f" p={row['p']:.2g}" if math.isfinite(row["p"]) else ""
            axes.annotate(
                f"{row['delta']:+.3f}{p}", (0, i), xytext=(3, 0), textcoords="offset points",
                va="center", fontsize=8, color="white",
            )  # fmt: skip


def _knn_panel(axes, rows: pd.DataFrame, arm: str) -> None:  # noqa: ANN001 (matplotlib Axes)
    for i, row in rows.iterrows():
        start, end = row["knn_start"], row["knn_end"]
        colour = COLOURS.get(row["method"], OTHER_COLOUR)
        if math.isfinite(start):
            axes.plot([start], [i], "o", color=colour)
        if math.isfinite(start) and math.isfinite(end):
            axes.annotate(
                "", (end, i), (start, i), arrowprops={"arrowstyle": "->", "color": colour}
            )
            axes.plot([end], [i], "s", color=colour)
    supervised = rows[(rows["method"] == "supervised") & rows["knn_start"].notna()]
    if not supervised.empty:
        axes.axvline(float(supervised["knn_start"].iloc[0]), color="black", linestyle=":", lw=1)
    axes.set_yticks(np.arange(len(rows)), [method_label(m) for m in rows["method"]])
    axes.set_ylim(len(rows) - 0.5, -0.5)
    axes.set_xlabel("val k-NN: start ● → end ■ (dotted: supervised start)")
    axes.set_title(f"{ARM_LABELS[arm]}: what pretraining did to the features")
