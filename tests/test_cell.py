"""One grid cell end to end: what its results.json records beside the metrics."""

from __future__ import annotations

from pathlib import Path

from cass_hpc.cell import CellSpec, run_cell
from cass_hpc.finetune import FinetuneConfig
from cass_hpc.models import ArmSpec


def _supervised_cell(tmp_path: Path, data: Path, label_fraction: float) -> CellSpec:
    return CellSpec(
        experiment="cell", store_root=tmp_path / "runs", dataset_path=data, image_size=32,
        method="supervised", pretrain=None, method_params={},
        arms={"cnn": ArmSpec("resnet10t"),
              "vit": ArmSpec("vit_tiny_patch16_224", {"img_size": 32, "depth": 1})},
        out_dim=16, arm="cnn", label_fraction=label_fraction, seed=0,
        finetune=FinetuneConfig(max_epochs=1, batch_size=8), threads=2,
    )  # fmt: skip


def test_a_label_fraction_raised_to_one_image_per_class_is_in_results_warnings(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    record = run_cell(_supervised_cell(tmp_path, tiny_dataset, 0.01))
    notices = [w for w in record["warnings"] if w.startswith("label_fraction=0.01 ")]
    assert len(notices) == 1 and "images per class used 1, 1, 1, 1" in notices[0], record
    assert record["finetune"]["n_train"] == 4
