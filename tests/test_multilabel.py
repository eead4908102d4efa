"""Multi-label tasks end to end (the autoimmune set's shape: several classes per image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_module

from cass_hpc.cell import CellSpec, run_cell
from cass_hpc.data.multilabel import multilabel_fraction_indices, multilabel_split
from cass_hpc.data.shards import ShardReader, read_manifest
from cass_hpc.data.splits import label_fraction_indices
from cass_hpc.finetune import FinetuneConfig
from cass_hpc.metrics import classification_metrics
from cass_hpc.models import ArmSpec
from cass_hpc.pretrain import PretrainConfig


def random_multi_hot(n: int = 80, classes: int = 5, seed: int = 0) -> np.ndarray:
    y = (np.random.default_rng(seed).random((n, classes)) < 0.3).astype(np.int64)
    y[0] = [0, 0, 0, 0, 1]  # a rare label
    return y


def test_iterative_stratification_puts_every_label_in_every_split() -> None:
    y = random_multi_hot()
    parts = multilabel_split(y, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(y)))
    for name, idx in parts.items():
        present = y[idx].sum(axis=0)
        assert (present[:4] > 0).all(), name
    assert len(parts["train"]) == pytest.approx(56, abs=3)


def test_a_small_set_still_gets_every_label_into_the_ten_percent_split() -> None:
    y = random_multi_hot(n=15, seed=3)
    y[:, 4] = 0
    y[:3, 4] = 1  # three images carry the rare label: one per split
    parts = multilabel_split(y, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    for name, idx in parts.items():
        present = y[idx].sum(axis=0)
        assert (present[y.sum(axis=0) >= 3] > 0).all(), (name, present)
    assert len(parts["train"]) >= len(parts["test"]) >= len(parts["val"]) >= 1


def test_label_fraction_keeps_every_label_and_is_seeded() -> None:
    y = random_multi_hot()
    idx = multilabel_fraction_indices(y, 0.05, seed=1)
    assert (y[idx].sum(axis=0) > 0).all() and len(idx) == 4  # round(0.05 · 80)
    assert np.array_equal(idx, multilabel_fraction_indices(y, 0.05, seed=1))
    assert not np.array_equal(idx, multilabel_fraction_indices(y, 0.05, seed=2))


def test_an_absent_label_is_named() -> None:
    y = random_multi_hot()
    y[:, 2] = 0
    with pytest.raises(ValueError, match=r"label\(s\) \[2\]"):
        multilabel_fraction_indices(y, 0.1, seed=0)


def test_multilabel_metrics_use_the_threshold() -> None:
    targets = torch.tensor([[1, 0], [0, 1]])
    logits = torch.tensor([[2.0, -2.0], [-2.0, 0.5]])
    assert classification_metrics(logits, targets, 2, multilabel=True)["macro_f1"] == 1.0
    strict = classification_metrics(logits, targets, 2, multilabel=True, threshold=0.7)
    assert strict["macro_f1"] == pytest.approx(0.5)


def test_multilabel_dataset_packs_pretrains_and_fine_tunes_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "ml"
    proc = run_module(
        "preprocess", "synthetic", "shapes_multilabel", str(data), "--per-class", "12",
        "--image-size", "32",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = read_manifest(data)
    assert manifest.multilabel and ShardReader(manifest, "train").labels.shape[1] == 4

    spec = CellSpec(
        experiment="ml", store_root=tmp_path / "runs", dataset_path=data, image_size=32,
        method="cass", pretrain=PretrainConfig(epochs=1, batch_size=8), method_params={},
        arms={"cnn": ArmSpec("resnet10t"),
              "vit": ArmSpec("vit_tiny_patch16_224", {"img_size": 32, "depth": 1})},
        out_dim=16, arm="cnn", label_fraction=0.1, seed=0,
        finetune=FinetuneConfig(max_epochs=2, batch_size=8), threads=2,
    )  # fmt: skip
    record = run_cell(spec)
    assert record["multilabel"] is True
    train = ShardReader(manifest, "train").labels
    subset = label_fraction_indices(train, 0.1, 0, 4)
    assert (train[subset].sum(axis=0) > 0).all()  # every label kept at 10 %
    assert record["finetune"]["n_train"] == len(subset)
    assert set(record["metrics"]) == {"loss", "macro_f1", "micro_f1", "balanced_accuracy", "auroc"}
    assert 0.0 <= record["metrics"]["macro_f1"] <= 1.0
    per_label = record["per_class"]
    assert "confusion" not in per_label and len(per_label["f1"]) == 4  # per label, multi-hot
