"""One grid cell end to end: what its results.json records beside the metrics, and its state
when Ctrl-C stops it."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed
from conftest import REPO, run_module

from cass_hpc.cell import CellSpec, cell_dir, cell_key, check_cell, run_cell
from cass_hpc.data.shards import read_manifest
from cass_hpc.finetune import FinetuneConfig
from cass_hpc.knn import KnnMonitor
from cass_hpc.models import ArmSpec
from cass_hpc.plan import plan_grid
from cass_hpc.pretrain import PretrainConfig
from preprocess.__main__ import main as preprocess_main


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
    spec = dataclasses.replace(_supervised_cell(tmp_path, tiny_dataset, 0.01), keep_weights=False)
    record = run_cell(spec)
    assert record["files"] == {"predictions": "predictions.npz"}  # keep_weights=false
    assert not list(tmp_path.rglob("model.pt")) and list(tmp_path.rglob("predictions.npz"))
    notices = [w for w in record["warnings"] if w.startswith("label_fraction=0.01 ")]
    assert len(notices) == 1 and "images per class used 1, 1, 1, 1" in notices[0], record
    assert record["finetune"]["n_train"] == 4
    assert record["knn_start"] is None  # one validation image per class: the monitor is off


TINY_CASS = ["image_size=32", "method=cass", "arm=cnn", "seed=0", "threads=1",
             "pretrain.epochs=3", "pretrain.batch_size=8", "finetune.max_epochs=1",
             "finetune.batch_size=8", "+model.vit.kwargs.depth=1", "model.out_dim=16"]  # fmt: skip


def _pretrained_epochs(runs: Path) -> int:
    checkpoints = list(runs.rglob("pretrain/*/checkpoint.pt"))
    return torch.load(checkpoints[0], weights_only=True)["epoch"] if checkpoints else 0


def test_ctrl_c_records_the_cell_interrupted_in_one_line_and_a_rerun_resumes(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    args = ["cass_hpc.run", f"runs_dir={runs}", f"dataset.path={tiny_dataset}", *TINY_CASS]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    victim = subprocess.Popen(
        [sys.executable, "-m", *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while victim.poll() is None and time.monotonic() < deadline and not _pretrained_epochs(runs):
        time.sleep(0.05)
    assert victim.poll() is None, "the run ended before Ctrl-C: " + victim.stderr.read()[-2000:]
    victim.send_signal(signal.SIGINT)
    _, stderr = victim.communicate(timeout=120)
    assert victim.returncode == 130, stderr[-3000:]
    assert stderr.endswith("interrupted; run the same command to resume\n"), stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    (state,) = runs.rglob("cells/*/state.json")
    assert json.loads(state.read_text())["state"] == "interrupted"
    (pretrain_state,) = runs.rglob("pretrain/*/state.json")  # the pretraining reports too
    assert json.loads(pretrain_state.read_text())["state"] == "interrupted"
    status = run_module("cass_hpc.status", str(runs / "default"), timeout=120)
    assert "pretrain: 1 interrupted" in status.stdout, status.stdout
    assert "cell: 1 interrupted" in status.stdout and "missing" not in status.stdout

    rerun = run_module(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming pretraining" in rerun.stdout + rerun.stderr
    assert json.loads(state.read_text())["state"] == "done"
    assert json.loads(pretrain_state.read_text())["state"] == "done"


@pytest.fixture(scope="module")
def two_val_per_class(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_dataset's 4 classes × 20 images (0.1 s to pack): 2 validation images per class, the
    fewest the k-NN monitor's leave-one-out scores (tiny_dataset has 1: the monitor is off)."""
    out = tmp_path_factory.mktemp("data") / "two_val"
    args = ["synthetic", "shapes", str(out), "--per-class", "20", "--image-size", "32"]
    assert preprocess_main([*args, "--workers", "1"]) == 0
    return out


def test_a_cell_keeps_its_weights_and_probabilities_which_reproduce_its_test_metrics(
    two_val_per_class: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import timm

    from cass_hpc.data.dataset import ShardDataset
    from cass_hpc.data.shards import read_manifest
    from cass_hpc.data.transforms import eval_transform
    from cass_hpc.metrics import classification_metrics
    from cass_hpc.models import build_arm

    looked: dict[str, dict[str, torch.Tensor]] = {}  # the weights the k-NN monitor scored
    score = KnnMonitor.score

    def watched(self, arms, accelerator):  # type: ignore[no-untyped-def]
        looked.update(
            {a: {k: v.clone() for k, v in arm.net.state_dict().items()} for a, arm in arms.items()}
        )
        return score(self, arms, accelerator)

    monkeypatch.setattr(KnnMonitor, "score", watched)
    record = run_cell(_supervised_cell(tmp_path, two_val_per_class, 1.0))
    cell = next((tmp_path / "runs").rglob("results.json")).parent
    # no pretraining: the yardstick is the k-NN of the very weights fine-tuning started from
    set_seed(0)
    start = build_arm(ArmSpec("resnet10t"), num_classes=4).net.state_dict()
    assert set(looked) == {"cnn"} and all(torch.equal(start[k], looked["cnn"][k]) for k in start)
    assert set(record["knn_start"]) == {"cnn", "chance"} and record["knn_start"]["chance"] == 0.25
    assert 0 <= record["knn_start"]["cnn"] <= 1 and record["pretrain"] is None
    assert record["files"] == {"weights": "model.pt", "predictions": "predictions.npz"}
    assert record["dataset_path"] == str(two_val_per_class.resolve()) and record["image_size"] == 32
    assert set(record["val_metrics"]) == set(record["metrics"]) >= {"auroc", "macro_f1", "loss"}
    per_class = record["per_class"]
    assert per_class["names"] == record["classes"] and sum(per_class["support"]) == len(
        np.load(cell / "predictions.npz")["test_targets"]
    )
    assert np.trace(np.array(per_class["confusion"])) > 0 or record["metrics"]["micro_f1"] == 0
    # the weights are a plain timm state dict that timm itself loads
    timm.create_model(
        record["backbone"], num_classes=4, checkpoint_path=str(cell / "model.pt"),
        **record["backbone_kwargs"],
    )  # fmt: skip
    arm = build_arm(
        ArmSpec(record["backbone"], record["backbone_kwargs"], str(cell / "model.pt")),
        num_classes=4,
    ).eval()
    test = ShardDataset(read_manifest(two_val_per_class), "test", eval_transform(32))
    with torch.no_grad():
        logits = arm(torch.stack([test[i][0] for i in range(len(test))]))
    saved = np.load(cell / "predictions.npz")
    assert np.allclose(logits.softmax(1).numpy(), saved["test_probs"], atol=1e-5)
    assert (saved["test_targets"] == test.labels).all()
    again = classification_metrics(logits, torch.as_tensor(test.labels), 4)
    assert again["macro_f1"] == record["metrics"]["macro_f1"]


def test_item6_a_file_where_a_cell_folder_belongs_is_one_line_in_the_grid_check_and_the_run(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    spec = _supervised_cell(tmp_path, tiny_dataset, 1.0)
    folder = cell_dir(spec, cell_key(spec, read_manifest(tiny_dataset)))
    folder.parent.mkdir(parents=True)
    folder.write_text("not a folder")
    line = (
        f"{folder} is a file where the run store needs a folder; move the file away or choose "
        "another runs_dir"
    )
    with pytest.raises(ValueError) as refused:
        plan_grid([(["seed=0"], spec)])  # the grid's pre-check: nothing submitted
    assert str(refused.value) == f"cell [seed=0]: {line}"
    with pytest.raises(ValueError) as refused:
        run_cell(spec)
    assert str(refused.value) == line
    assert folder.read_text() == "not a folder"


@pytest.mark.parametrize(
    ("method", "params", "arm_name", "kwargs", "message"),
    [
        ("supervised", {}, "not_a_model", {}, "model.cnn.name: unknown timm model 'not_a_model'"),
        ("simclr", {}, "resnet10t", {"depth": 3},
         "model.cnn: timm cannot build resnet10t with {'depth': 3}: TypeError: "),
        ("cass_plus", {"views": 3}, "resnet10t", {}, "views must be 1 or 2, got 3"),
        ("mae", {"decoder_heads": 3}, "resnet10t", {},
         "method.params.decoder_heads=3 must divide decoder_dim=128"),
    ],
)  # fmt: skip
def test_item1_the_pre_check_builds_each_configuration_on_the_meta_device(
    tiny_dataset: Path,
    tmp_path: Path,
    method: str,
    params: dict,
    arm_name: str,
    kwargs: dict,
    message: str,
) -> None:
    """What a stage would refuse when it builds its nets is refused by ``check_cell`` (the
    grid's pre-check, before anything is submitted), without memory or weights."""
    spec = _supervised_cell(tmp_path, tiny_dataset, 1.0)
    arms = {**spec.arms, "cnn": ArmSpec(arm_name, kwargs)}
    arm = "vit" if method == "mae" else "cnn"
    pretrain = None if method == "supervised" else PretrainConfig(epochs=1)
    spec = dataclasses.replace(
        spec, method=method, method_params=params, arms=arms, arm=arm, pretrain=pretrain
    )
    with pytest.raises(ValueError) as refused:
        check_cell(spec, read_manifest(tiny_dataset))
    assert str(refused.value).startswith(message), refused.value
    assert not (tmp_path / "runs").exists()  # nothing made
