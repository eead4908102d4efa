"""Collapse is real: plain CASS from random init collapses on small data; it is detected,
recorded in results.json, and anti_collapse=center prevents it (same data, same seed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cass_hpc.cell import CellSpec, run_cell
from cass_hpc.collapse import CollapseError, CollapseMonitor
from cass_hpc.finetune import FinetuneConfig
from cass_hpc.models import ArmSpec
from cass_hpc.pretrain import PretrainConfig

THRESHOLD = 0.5


def test_monitor_warns_once_after_k_consecutive_collapsed_epochs() -> None:
    monitor = CollapseMonitor(threshold=0.1, epochs=2)
    for epoch, value in enumerate([0.05, 0.3, 0.05, 0.04, 0.03], start=1):
        monitor.update(epoch, {"vit": value, "cnn": 1.0})
    assert len(monitor.warnings) == 1
    assert "vit net" in monitor.warnings[0] and "epoch 4" in monitor.warnings[0]


def test_monitor_stop_action_raises_naming_the_net() -> None:
    monitor = CollapseMonitor(threshold=0.1, epochs=1, action="stop")
    with pytest.raises(CollapseError, match="cnn net.*Stopped"):
        monitor.update(3, {"cnn": 0.01})


def test_monitor_rejects_an_unknown_action() -> None:
    with pytest.raises(ValueError, match="'explode'"):
        CollapseMonitor(threshold=0.1, epochs=1, action="explode")


def cass_cell(root: Path, dataset: Path, anti_collapse: str) -> CellSpec:
    return CellSpec(
        experiment="collapse",
        store_root=root,
        dataset_path=dataset,
        image_size=32,
        method="cass",
        pretrain=PretrainConfig(
            epochs=8, batch_size=8, swa=False, collapse_threshold=THRESHOLD, collapse_epochs=2
        ),
        method_params={"anti_collapse": anti_collapse},
        arms={
            "cnn": ArmSpec("resnet10t"),
            "vit": ArmSpec("vit_tiny_patch16_224", {"img_size": 32, "depth": 2}),
        },
        out_dim=64,
        arm="vit",
        label_fraction=1.0,
        seed=0,
        finetune=FinetuneConfig(max_epochs=1, batch_size=8),
        threads=2,
    )


def test_plain_cass_collapse_is_recorded_and_centering_prevents_it(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    plain = run_cell(cass_cell(tmp_path, tiny_dataset, "none"))
    assert plain["pretrain"]["loss"][-1] < 0.05  # the CASS loss is "solved" ...
    assert min(plain["pretrain"]["spread"]["vit"]) < THRESHOLD  # ... by collapsing
    assert any("COLLAPSE" in w and "vit" in w for w in plain["warnings"])
    assert plain["warnings"] == plain["pretrain"]["collapse_warnings"]

    centred = run_cell(cass_cell(tmp_path, tiny_dataset, "center"))
    assert min(min(v) for v in centred["pretrain"]["spread"].values()) > THRESHOLD
    assert centred["warnings"] == []
