"""Synthetic results.json trees with known numbers for the collector's tests (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

BACKBONES = {"cnn": "resnet18", "vit": "vit_tiny_patch16_224"}


def result(
    key: str,
    *,
    method: str = "cass",
    arm: str = "cnn",
    label_fraction: float = 0.1,
    seed: int = 0,
    macro_f1: float = 0.8,
    micro_f1: float | None = None,
    balanced_accuracy: float = 0.6,
    created: str = "2026-11-21T22:10:00Z",
    pretrain: dict[str, object] | None = None,
    dataset: str = "demo-synthetic",
    experiment: str = "demo",
    history: list[dict[str, float]] | None = None,
    auroc: float | None = None,
    val_metrics: dict[str, float | None] | None = None,
    per_class: dict[str, list] | None = None,
    split_seed: int | None = None,
) -> dict[str, object]:
    """A valid results.json record (schema cass-hpc-results/1) with the given numbers; the
    issue-14 fields (``auroc``, ``val_metrics``, ``per_class``, ``split_seed``) only when given,
    as an older record lacks them."""
    record = {
        "schema": "cass-hpc-results/1",
        "key": key,
        "experiment": experiment,
        "dataset": dataset,
        "method": method,
        "arm": arm,
        "backbone": BACKBONES[arm],
        "label_fraction": label_fraction,
        "seed": seed,
        "metrics": {
            "macro_f1": macro_f1,
            "micro_f1": macro_f1 if micro_f1 is None else micro_f1,
            "balanced_accuracy": balanced_accuracy,
            "loss": 0.3,
        },
        "finetune": {"wall_s": 1.0, "epochs_run": 2, "n_train": 4, "history": history or []},
        "pretrain": pretrain,
        "precision": "fp32",
        "device": "cpu",
        "created": created,
    }
    if auroc is not None:
        record["metrics"]["auroc"] = auroc  # type: ignore[index]
    extra = {"val_metrics": val_metrics, "per_class": per_class, "split_seed": split_seed}
    return record | {name: value for name, value in extra.items() if value is not None}


def per_class_block(
    names: list[str], f1: list[float], auroc: list[float | None] | None = None
) -> dict[str, list]:
    """A ``per_class`` block (contract of issue 14): precision = recall = f1, support 10."""
    return {"names": names, "support": [10] * len(names), "precision": list(f1),
            "recall": list(f1), "f1": list(f1),
            "auroc": list(auroc) if auroc is not None else [None] * len(names)}  # fmt: skip


def pretrain(
    key: str,
    wall_s: float,
    method: str = "cass",
    images_per_s: float = 100.0,
    *,
    knn: dict[str, list[float]] | None = None,
    knn_chance: float | None = 0.25,
    knn_s: float = 2.0,
    knn_from: int = 1,
) -> dict:
    """The pretrain block of a record; with ``knn`` (per arm, one score per epoch from
    ``knn_from``: 0 = the starting weights, as records make since they are scored; 1 = a record
    from before) also the k-NN monitor's fields, the last epoch's weights kept. Without it, an
    old record's block."""
    block = {"key": key, "method": method, "wall_s": wall_s, "epochs": 1,
             "images_per_s": images_per_s, "loss": [1.0], "spread": {}}  # fmt: skip
    if knn is not None:
        epochs = max(map(len, knn.values()), default=0)
        block |= {
            "knn_epochs": list(range(knn_from, knn_from + epochs)),
            "knn": knn,
            "knn_chance": knn_chance,
            "knn_final": {arm: scores[-1] for arm, scores in knn.items()},
            "kept": dict.fromkeys(knn, "last"),
            "knn_s": knn_s,
        }
    return block


def write_tree(
    root: Path,
    records: list[dict[str, object]],
    overrides: list[list[str]] | None = None,
    predictions: dict[str, dict[str, np.ndarray]] | None = None,
) -> list[Path]:
    """One results.json per record, each in its own nested folder as the grid writes them, with
    a state.json holding ``overrides[i]`` when given and a predictions.npz (+ ``files`` in the
    record) for each record key in ``predictions``; returns the results.json paths."""
    paths = []
    for index, record in enumerate(records):
        folder = root / "store" / f"cell-{index:03d}-{record['key']}"
        folder.mkdir(parents=True)
        if predictions is not None and record["key"] in predictions:
            np.savez(folder / "predictions.npz", **predictions[str(record["key"])])
            record = record | {"files": {"weights": "model.pt", "predictions": "predictions.npz"}}
        (folder / "results.json").write_text(json.dumps(record), encoding="utf-8")
        if overrides is not None:
            state = {"overrides": overrides[index], "state": "done"}
            (folder / "state.json").write_text(json.dumps(state), encoding="utf-8")
        paths.append(folder / "results.json")
    return paths


# The "paper-shaped" grid: brain_mri, DINO/CASS/supervised × CNN/ViT × 10 %/100 % × seeds 0, 1,
# test micro-F1 (the paper's metric for this dataset) per (method, arm, fraction): two seeds each.
# DINO·ViT at 100 % has only seed 0 (a missing cell).
GRID_F1 = {
    ("dino", "cnn", 0.1): (0.80, 0.84), ("dino", "cnn", 1.0): (0.90, 0.92),
    ("cass", "cnn", 0.1): (0.85, 0.87), ("cass", "cnn", 1.0): (0.95, 0.97),
    ("supervised", "cnn", 0.1): (0.70, 0.74), ("supervised", "cnn", 1.0): (0.88, 0.90),
    ("dino", "vit", 0.1): (0.60, 0.64), ("dino", "vit", 1.0): (0.70,),
    ("cass", "vit", 0.1): (0.66, 0.70), ("cass", "vit", 1.0): (0.80, 0.84),
    ("supervised", "vit", 0.1): (0.50, 0.52), ("supervised", "vit", 1.0): (0.75, 0.77),
}  # fmt: skip
# pretraining wall time (s): CASS one run per seed; DINO one run per arm and seed
CASS_WALL = {0: 100.0, 1: 110.0}
DINO_WALL = {("cnn", 0): 200.0, ("vit", 0): 250.0, ("cnn", 1): 210.0, ("vit", 1): 240.0}
# ISIC-2019 at 100 % only, one seed, balanced accuracy: CASS beats DINO by 0.1 on each arm
ISIC_BACC = {("dino", "cnn"): 0.4, ("cass", "cnn"): 0.5, ("dino", "vit"): 0.5, ("cass", "vit"): 0.6}


def paper_grid() -> list[dict[str, object]]:
    """The records of the paper-shaped grid above (brain_mri) plus the ISIC-2019 cells."""
    records = []
    for (method, arm, fraction), values in GRID_F1.items():
        for seed, value in enumerate(values):
            block = None
            if method == "cass":
                block = pretrain(f"cass-s{seed}", CASS_WALL[seed])
            elif method == "dino":
                block = pretrain(f"dino-{arm}-s{seed}", DINO_WALL[(arm, seed)], method="dino")
            key = f"{method}-{arm}-{fraction}-{seed}"
            cell = {"method": method, "arm": arm, "label_fraction": fraction, "seed": seed}
            records.append(
                result(key, **cell, micro_f1=value, macro_f1=value - 0.1, dataset="brain_mri",
                       experiment="paper", pretrain=block)
            )  # fmt: skip
    for (method, arm), value in ISIC_BACC.items():
        cell = {"method": method, "arm": arm, "label_fraction": 1.0}
        records.append(
            result(f"isic-{method}-{arm}", **cell, balanced_accuracy=value, dataset="isic2019",
                   experiment="paper")
        )  # fmt: skip
    return records
