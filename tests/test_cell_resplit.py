"""``split_seed`` through a cell: its keys and directory, the grid's pretraining stages, the Hydra
config, and a cell run on a re-drawn split (issue 14 item 7)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_BUDGET, run_module
from hydra import compose, initialize_config_dir

from cass_hpc import cell
from cass_hpc.cell import CellSpec, cell_dir, cell_key, pretrain_key, run_cell
from cass_hpc.data.resplit import ResplitDataset
from cass_hpc.data.shards import ShardReader, read_manifest
from cass_hpc.finetune import FinetuneConfig
from cass_hpc.models import ArmSpec
from cass_hpc.plan import plan_grid
from cass_hpc.pretrain import PretrainConfig
from cass_hpc.run import spec_from_config

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def _spec(tmp_path: Path, data: Path, **changes: Any) -> CellSpec:
    spec = CellSpec(
        experiment="split", store_root=tmp_path / "runs", dataset_path=data, image_size=32,
        method="cass", pretrain=PretrainConfig(epochs=1, batch_size=8), method_params={},
        arms={"cnn": ArmSpec("resnet10t"),
              "vit": ArmSpec("vit_tiny_patch16_224", {"img_size": 32, "depth": 1})},
        out_dim=16, arm="cnn", label_fraction=1.0, seed=0,
        finetune=FinetuneConfig(max_epochs=1, batch_size=8), threads=1,
    )  # fmt: skip
    return dataclasses.replace(spec, **changes)


def test_the_packed_split_leaves_keys_and_cell_dirs_as_before_split_seed_existed(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[dict] = []
    real = cell.store.stable_key
    monkeypatch.setattr(cell.store, "stable_key", lambda obj: hashed.append(obj) or real(obj))
    manifest = read_manifest(tiny_dataset)
    spec = _spec(tmp_path, tiny_dataset)
    key = cell_key(spec, manifest)
    assert len(hashed) == 2 and not any("split_seed" in h for h in hashed)  # cell + pretrain
    assert cell_dir(spec, key).name == f"cass-cnn-lf1-s0-{key}"
    redrawn = _spec(tmp_path, tiny_dataset, split_seed=0)
    assert pretrain_key(redrawn, manifest) != pretrain_key(spec, manifest)
    assert cell_key(redrawn, manifest) != key
    assert cell_dir(redrawn, "k").name == "cass-cnn-lf1-s0-ss0-k"


def test_a_grid_pretrains_once_per_split_seed_and_seed_shared_by_both_arms(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    items = [
        ([f"split_seed={ss}", f"seed={s}", f"arm={arm}"],
         _spec(tmp_path, tiny_dataset, split_seed=ss, seed=s, arm=arm))
        for ss in (None, 0, 1) for s in (0, 1) for arm in ("cnn", "vit")
    ]  # fmt: skip
    plan = plan_grid(items)
    assert len(plan.cells) == 12 and len(plan.pretrainings) == 6
    by_cell = {c.overrides[:2]: c.pretrain for c in plan.cells}
    assert len(set(by_cell.values())) == 6
    for stage in plan.pretrainings.values():  # each stage is run with its first cell's split_seed
        users = [c for c in plan.cells if c.pretrain == stage.key]
        assert len(users) == 2 and all(c.overrides[:2] == stage.overrides[:2] for c in users)


def test_split_seed_reaches_the_cell_from_the_config_and_a_bad_one_is_refused() -> None:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        assert spec_from_config(compose("config")).split_seed is None
        assert spec_from_config(compose("config", overrides=["split_seed=2"])).split_seed == 2
        with pytest.raises(ValueError, match="split_seed must be null or an integer >= 0, got -1"):
            spec_from_config(compose("config", overrides=["split_seed=-1"]))


def test_a_cell_on_a_redrawn_split_trains_and_tests_on_it_and_records_it(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    spec = _spec(tmp_path, tiny_dataset, method="supervised", pretrain=None, split_seed=1,
                 label_fraction=0.5)  # fmt: skip
    record = run_cell(spec)
    assert record["split_seed"] == 1 and "-ss1-" in str(
        next((tmp_path / "runs").rglob("results.json"))
    )
    split = json.loads(Path(record["split_file"]).read_text())
    manifest = read_manifest(tiny_dataset)
    assert (
        split["split_seed"] == 1
        and Path(record["split_file"]).parent == tmp_path / "runs" / "splits"
    )
    assert (
        split["splits"]["test"]["ids"] != ShardReader(manifest, "test").ids
    )  # not the packed test
    # the label fraction is drawn from the re-drawn train split: half of each class's 9 images
    train = ResplitDataset(manifest, "train", lambda image: image, 1)
    assert split["splits"]["train"]["ids"] == train.ids
    assert record["finetune"]["n_train"] == 4 * 5


@pytest.mark.slow  # a real multirun, 2 pretrainings (one per split_seed): 2.5 min on a loaded box
def test_a_multirun_over_split_seed_pretrains_each_split_and_records_it(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    proc = run_module(
        "cass_hpc.run", "-m", "experiment=demo", f"runs_dir={runs}", f"dataset.path={tiny_dataset}",
        "method=cass", "label_fraction=1.0", "seed=0", "arm=cnn,vit", "split_seed=0,1",
        *TINY_BUDGET, "+model.vit.kwargs.depth=1", "hydra.launcher.parallelism=2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in (runs / "demo").rglob("results.json")]
    assert sorted((r["split_seed"], r["arm"]) for r in results) == [
        (0, "cnn"), (0, "vit"), (1, "cnn"), (1, "vit")
    ]  # fmt: skip
    assert len({r["pretrain"]["key"] for r in results}) == 2  # one per split_seed, shared by arms
    assert len(list((runs / "demo" / "splits").glob("*.json"))) == 2
