"""The paper beside us: its values (shipped as package data), its datasets and their metrics.

``paper_values.csv`` holds every number of the CASS paper's Tables 2-5 and of its CASS
ablations (App. C/D, Tables 6-10, 12, 14-21) as printed, mean and variance over five seeds;
``paper_times.csv`` holds Table 1 (pretraining time). Our datasets are matched to the paper's by
name (a manifest called ``isic2019``, ``ISIC-2019`` or ``isic_2019_384`` is ISIC-2019).

Metrics (§4.3, App. G.0.2): the paper reports "F1" for the autoimmune, Dermofit and brain-MRI
sets and balanced multi-class accuracy ("recall") for ISIC-2019. Its F1 is the *pooled* (micro)
F1: the authors' released evaluation notebook (``eval.ipynb``, class ``MyF1Score``) sums true
positives, false positives and false negatives over all images and labels and returns
``2·tp / (2·tp + fp + fn)``. So the paper's F1 is our ``micro_f1`` (for single-label data that is
accuracy), and its ISIC-2019 metric is our ``balanced_accuracy``. Other datasets default to
``macro_f1``; ``--metric`` overrides any of this.

Example:
    >>> canonical_dataset("ISIC_2019-384px")
    'isic2019'
    >>> gains_frame(paper_summary())        # the paper's own numbers through App. G.0.3
"""

from __future__ import annotations

import math
import re
from functools import cache
from importlib import resources

import pandas as pd

from cass_hpc.report.format import (
    MISSING,
    format_cell,
    format_delta,
    format_duration,
    format_fraction,
    paper_order,
    row_label,
)
from cass_hpc.report.settings import off_paper, parse_setting
from cass_hpc.report.tables import Table
from cass_hpc.report.timing import format_ratio

PAPER_DATASETS = ("autoimmune", "dermofit", "brain_mri", "isic2019")
PAPER_METRICS = {  # our metric name for the paper's metric of each dataset (see module doc)
    "autoimmune": "micro_f1",
    "dermofit": "micro_f1",
    "brain_mri": "micro_f1",
    "isic2019": "balanced_accuracy",
}
PAPER_METRIC_WORDS = {"micro_f1": "F1", "balanced_accuracy": "balanced multi-class accuracy"}
DEFAULT_METRIC = "macro_f1"  # a dataset the paper does not have
# Abstract, §1 and §8: "improved F1 Score and Recall value by an average of 3.8% with 1% labeled
# data, 5.9% with 10% labeled data, and 10.13% with 100% labeled data" (CASS vs DINO).
PAPER_GAINS = {0.01: 3.8, 0.1: 5.9, 1.0: 10.13}
PAPER_TIME_SAVING = 0.69  # §5.1: "CASS took an average of 69% less time compared to DINO"
_ALIASES = (  # (pattern on the lower-cased name with separators removed, canonical name)
    (re.compile(r"autoimmune|dermatomyositis|myositis"), "autoimmune"),
    (re.compile(r"dermofit"), "dermofit"),
    (re.compile(r"brain|mri"), "brain_mri"),
    (re.compile(r"isic"), "isic2019"),
)


def canonical_dataset(name: str) -> str | None:
    """The paper's name for a dataset (``autoimmune``, ``dermofit``, ``brain_mri``,
    ``isic2019``), or None when the name matches none of them."""
    squashed = re.sub(r"[^a-z0-9]", "", str(name).lower())
    for pattern, canonical in _ALIASES:
        if pattern.search(squashed):
            return canonical
    return None


def metric_for(dataset: str, choices: dict[str, str]) -> str:
    """The metric a dataset's table shows: ``choices[dataset]`` (its name or the paper's name
    for it), else ``choices["*"]`` (``--metric NAME``), else the paper's metric, else macro-F1."""
    canonical = canonical_dataset(dataset)
    for key in (dataset, canonical, "*"):
        if key is not None and key in choices:
            return choices[key]
    return PAPER_METRICS.get(canonical or "", DEFAULT_METRIC)


def _read(name: str) -> pd.DataFrame:
    source = resources.files("cass_hpc.report").joinpath(name)
    with resources.as_file(source) as path:
        return pd.read_csv(path, comment="#", dtype={"setting": str}, keep_default_na=False)


@cache
def paper_values() -> pd.DataFrame:
    """Every shipped paper value: table, dataset, setting, method, arm, backbone,
    label_fraction, mean, variance, printed (one row per cell, as in the paper)."""
    values = _read("paper_values.csv")
    for column in ("mean", "variance", "label_fraction"):
        values[column] = values[column].astype(float)
    return values


@cache
def paper_times() -> pd.DataFrame:
    """Paper Table 1: dataset, dino_min, cass_min (and the printed text)."""
    return _read("paper_times.csv")


def paper_summary(tables: tuple[int, ...] = (2, 3, 4, 5)) -> pd.DataFrame:
    """The paper's values shaped like our :func:`~cass_hpc.report.tables.aggregate` output
    (experiment ``paper``, n = 5 seeds, ``var`` = the printed variance, ``std`` = its root)."""
    values = paper_values()
    values = values[values["table"].isin(tables)]
    return paper_order(pd.DataFrame({
        "experiment": "paper", "dataset": values["dataset"], "setting": values["setting"],
        "method": values["method"], "arm": values["arm"], "backbone": values["backbone"],
        "label_fraction": values["label_fraction"],
        "metric": values["dataset"].map(PAPER_METRICS), "mean": values["mean"],
        "std": values["variance"] ** 0.5, "var": values["variance"], "n": 5, "best": False,
    })).reset_index(drop=True)  # fmt: skip


def _paper_row(
    dataset: str, setting: str, method: str, arm: str, fraction: float
) -> pd.Series | None:
    values = paper_values()
    match = values[
        (values["dataset"] == dataset) & (values["setting"] == setting)
        & (values["method"] == method) & (values["arm"] == arm)
        & ((values["label_fraction"] - fraction).abs() < 1e-9)
    ]  # fmt: skip
    return None if match.empty else match.sort_values("table").iloc[0]


COMPARISON_COLUMNS = (
    "experiment", "dataset", "setting", "method", "arm", "backbone", "label_fraction", "metric",
    "mean", "var", "n", "paper_table", "paper_backbone", "paper_mean", "paper_variance", "delta",
)  # fmt: skip


def comparison(
    rows: pd.DataFrame, spread: str = "var", title: str = ""
) -> tuple[Table, pd.DataFrame, list[str]]:
    """Ours beside the paper's value for every cell of ONE (experiment, dataset) that the paper
    has too; returns the table (empty when nothing matches), the same in long form with numbers
    (:data:`COMPARISON_COLUMNS`), and notes on what was not compared.

    ``rows``: our summary rows of that table's metric, with a ``fixed_settings`` column (the
    overrides every cell shared). A cell with a non-paper ablation value (``pretrain.epochs=1``)
    is compared only with the ablation row of that value, never with Tables 2-5. Δ = ours − paper.
    """
    notes: list[str] = []
    entries: dict[str, dict[str, str]] = {}
    long: list[dict[str, object]] = []
    for item in paper_order(rows).itertuples(index=False):
        dataset = canonical_dataset(item.dataset)
        if dataset is None:
            continue
        fixed = str(getattr(item, "fixed_settings", "") or "")
        setting = str(item.setting or "")
        off = off_paper("", fixed)
        if off or len(parse_setting(setting)) > 1:
            note = (
                f"not compared with the paper: {', '.join(off) or setting} is not a paper setting"
            )
            notes.append(note)
            continue
        paper = _paper_row(dataset, setting, item.method, item.arm, float(item.label_fraction))
        if paper is None:
            continue
        label = row_label(item.method, item.arm, item.backbone)
        label += f" · {format_fraction(item.label_fraction)}" + (f" · {setting}" if setting else "")
        entries[label] = {
            "Ours": format_cell(item.mean, getattr(item, spread), int(item.n)),
            "Paper": f"{paper['printed'].replace(' ', '')} ({paper['backbone']})",
            "Δ (ours − paper)": format_delta(float(item.mean) - float(paper["mean"])),
            "Paper table": str(int(paper["table"])),
        }
        long.append({
            **{c: getattr(item, c) for c in COMPARISON_COLUMNS[:11]},
            "paper_table": int(paper["table"]), "paper_backbone": paper["backbone"],
            "paper_mean": float(paper["mean"]), "paper_variance": float(paper["variance"]),
            "delta": float(item.mean) - float(paper["mean"]),
        })  # fmt: skip
    cells = pd.DataFrame.from_dict(entries, orient="index", dtype=object)
    cells.index.name = "Method · Arm (backbone) · fraction"
    frame = pd.DataFrame(long, columns=list(COMPARISON_COLUMNS))
    return Table(title=title, cells=cells), frame, sorted(set(notes))


def timing_comparison(timing: pd.DataFrame, title: str = "") -> Table:
    """Our Table 1 beside the paper's for the datasets it has (rows datasets)."""
    times = paper_times().set_index("dataset")
    rows = {}
    for item in timing.itertuples(index=False):
        dataset = canonical_dataset(item.dataset)
        if dataset not in times.index:
            continue
        paper = times.loc[dataset]
        paper_ratio = float(paper["cass_min"]) / float(paper["dino_min"])
        rows[str(item.dataset)] = {
            "Ours DINO": format_duration(item.dino_s) if item.dino_runs else MISSING,
            "Ours CASS": format_duration(item.cass_s) if item.cass_runs else MISSING,
            "Ours CASS / DINO": format_ratio(item.ratio),
            "Paper DINO": format_duration(60 * float(paper["dino_min"])),
            "Paper CASS": format_duration(60 * float(paper["cass_min"])),
            "Paper CASS / DINO": format_ratio(paper_ratio),
            "Δ ratio": format_delta(
                item.ratio - paper_ratio if math.isfinite(item.ratio) else None
            ),
        }
    cells = pd.DataFrame.from_dict(rows, orient="index", dtype=object)
    cells.index.name = "Dataset"
    return Table(title=title, cells=cells)


def paper_timing_frame() -> pd.DataFrame:
    """Paper Table 1 shaped like :func:`~cass_hpc.report.timing.timing_frame` (seconds)."""
    times = paper_times()
    return pd.DataFrame({
        "experiment": "paper", "dataset": times["dataset"],
        "dino_s": 60.0 * times["dino_min"], "cass_s": 60.0 * times["cass_min"],
        "dino_seeds": 1, "cass_seeds": 1, "dino_runs": 2, "cass_runs": 1, "dino_complete": True,
        "ratio": times["cass_min"] / times["dino_min"],
    })  # fmt: skip
