"""Every experiment grid in conf/experiment/ is smoke-run through a real Hydra multirun at a tiny
budget (the lightning-hydra-template `test_sweeps` pattern), so a broken grid fails in CI, not on
the cluster. Seeds and label fractions are pinned to one value each; every other swept value
(methods, backbone pairs, augmentations, optimisers, init, heads, ...) runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import REPO, run_module
from hub_fixtures import DEMO_TAGS, write_cached_weights
from hydra import compose, initialize_config_dir

from cass_hpc.run import spec_from_config

EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
TINY = [
    "hydra/launcher=basic",  # in-process: the submitit path is covered by test_run.py
    "seed=0",
    "label_fraction=1.0",
    "image_size=32",
    "pretrain.epochs=1",
    "pretrain.batch_size=8",
    "finetune.max_epochs=1",
    "finetune.batch_size=8",
    "threads=2",
]


def hub_cache(tmp_path: Path) -> dict[str, str]:
    """A Hugging Face cache with the demo pair's ImageNet tags (random weights, real files), for
    experiments that start from ImageNet (ablation_init): the environment that points there."""
    for tag in DEMO_TAGS.values():
        write_cached_weights(tmp_path / "hub", tag)
    return {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub")}


def test_every_experiment_is_covered() -> None:
    assert {"demo", "paper", "ablation_pairs", "anti_collapse"} <= set(EXPERIMENTS)


# Run elsewhere in the default suite: demo (tests/test_run.py, through the local stage launcher),
# paper (tests/test_slurm.py, as a SLURM DAG). The rest run in make test-slow (ablation_pairs:
# ViT-L, ResNet-200, DenseNet-161, Swin-B, ~2 min; recipes: DINO, CASS, CASS+ and supervised;
# anti_collapse: 25 s); the default suite composes each (below).
ELSEWHERE = {"demo", "paper"}
SLOW = {"ablation_pairs", "ablation_augment", "ablation_head", "ablation_init", "ablation_swa",
        "ablation_epochs", "ablation_batch", "ablation_optimizer", "recipes",
        "anti_collapse", "field"}  # fmt: skip


@pytest.mark.parametrize(
    "experiment",
    [pytest.param(e, marks=pytest.mark.slow) if e in SLOW | ELSEWHERE else e for e in EXPERIMENTS],
)
def test_experiment_grid_runs_at_a_tiny_budget(
    experiment: str, tiny_dataset: Path, tmp_path: Path
) -> None:
    env = hub_cache(tmp_path) if experiment == "ablation_init" else None
    proc = run_module(
        "cass_hpc.run", "-m", f"experiment={experiment}", f"runs_dir={tmp_path / 'runs'}",
        f"dataset.path={tiny_dataset}", *TINY, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("results.json")]
    assert results, "the grid produced no results.json"
    assert all(r["experiment"] == experiment for r in results)
    assert {r["arm"] for r in results} == {"cnn", "vit"}
    if experiment == "paper":  # DINO, CASS and supervised; timing recorded alike for both methods
        assert {r["method"] for r in results} == {"dino", "cass", "supervised"}
        for r in results:
            if r["method"] != "supervised":
                timing = {"wall_s", "images_per_s", "peak_mem_mb", "epoch_s", "images"}
                assert timing <= set(r["pretrain"]) and r["pretrain"]["wall_s"] > 0
        dino_runs = {r["pretrain"]["key"] for r in results if r["method"] == "dino"}
        assert len(dino_runs) == 2  # one DINO run per backbone


def test_every_experiment_composes_into_a_valid_cell() -> None:
    """The default suite's cover for the grids it does not run (make test-slow runs them, and
    ``python -m cass_hpc.run -m`` checks every swept value before it starts): each experiment
    composes and passes the config checks (types, ranges, arms)."""
    weights = ["weights.cnn=/w/cnn.pth", "weights.vit=/w/vit.pth"]  # init=imagenet's own files
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for experiment in sorted(set(EXPERIMENTS) - ELSEWHERE):
            spec = spec_from_config(compose("config", [f"experiment={experiment}", *weights]))
            assert spec.experiment == experiment
