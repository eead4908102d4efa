"""The Hydra configs compose into the typed cell description (configs mirror the code)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from cass_hpc.models import build_arm
from cass_hpc.run import spec_from_config

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def compose_spec(*overrides: str):  # type: ignore[no-untyped-def]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return spec_from_config(compose("config", overrides=list(overrides)))


def test_defaults_are_the_papers_protocol_on_the_demo_pair() -> None:
    spec = compose_spec()
    assert spec.method == "cass" and spec.pretrain is not None
    assert (spec.pretrain.lr, spec.pretrain.t_max, spec.pretrain.eta_min) == (1e-3, 16, 1e-6)
    assert (spec.pretrain.batch_size, spec.pretrain.epochs, spec.pretrain.swa) == (16, 100, True)
    assert (spec.finetune.lr, spec.finetune.max_epochs, spec.finetune.patience) == (3e-4, 50, 5)
    assert (spec.finetune.focal_alpha, spec.finetune.focal_gamma) == (1.0, 2.0)
    assert spec.arms["vit"].kwargs == {"img_size": spec.image_size}


def test_supervised_has_no_pretraining_stage() -> None:
    assert compose_spec("method=supervised").pretrain is None


def test_paper_pair_is_one_switch_away_and_builds_for_384_px() -> None:
    spec = compose_spec("model=paper_pair")
    assert spec.image_size == 384
    assert (spec.arms["cnn"].name, spec.arms["vit"].name) == ("resnet50", "vit_base_patch16_384")
    vit = build_arm(spec.arms["vit"], num_classes=spec.out_dim)
    with torch.no_grad():
        assert vit(torch.rand(1, 3, 384, 384)).shape == (1, 1000)


PAIRS = sorted(p.stem for p in (Path(CONF) / "model").glob("*.yaml"))


@pytest.mark.parametrize("pair", PAIRS)
def test_every_backbone_pair_composes_and_builds(pair: str) -> None:
    """The cheap CI guard for ablation_pairs (its full smoke multirun is `make test-slow`)."""
    spec = compose_spec(f"model={pair}", "image_size=64")
    for arm in spec.arms.values():
        net = build_arm(arm, num_classes=3)
        with torch.no_grad():
            assert net(torch.rand(1, 3, 64, 64)).shape == (1, 3)


def test_a_bad_monitor_setting_fails_when_the_config_is_read_so_a_grid_queues_nothing() -> None:
    """The launchers build every cell's spec before anything runs (stage_launcher.plan)."""
    with pytest.raises(ValueError, match="pretrain.keep must be one of .* got 'newest'"):
        compose_spec("method=cass_plus", "pretrain.keep=newest")
    with pytest.raises(ValueError, match="best_knn needs the k-NN monitor"):
        compose_spec("pretrain.keep=best_knn", "pretrain.knn_every=0")
    assert compose_spec("method=cass_plus").method_params["views"] == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("arm=transformer", "arm 'transformer' is not in the backbone pair ['cnn', 'vit']"),
        ("finetune.batch_size=0", "finetune.batch_size must be >= 2, got 0"),
        ("pretrain.batch_size=1", "pretrain.batch_size must be >= 2, got 1"),
        ("pretrain.epochs=0", "pretrain.epochs must be >= 1, got 0"),
        ("pretrain.swa_start=1.5", "pretrain.swa_start must be in [0, 1), got 1.5"),
        ("finetune.threshold=1", "finetune.threshold must be in (0, 1), got 1"),
        ("label_fraction=abc", "label_fraction must be float, got 'abc'"),
        ("seed=abc", "seed must be int, got 'abc'"),
        ("threads=0", "threads must be >= 1 (or null), got 0"),
        ("split_seed=x", "split_seed must be int or null, got 'x'"),
        ("model.out_dim=big", "model.out_dim must be int, got 'big'"),
        ("pretrain.epochs=abc", "pretrain.epochs must be int, got 'abc'"),
        ("pretrain.clip_grad=x", "pretrain.clip_grad must be float or null, got 'x'"),
        ("finetune.max_epochs=true", "finetune.max_epochs must be int, got True"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key_when_the_config_is_read(
    override: str, message: str
) -> None:
    """Found by a new user: these reached a KeyError, a ZeroDivisionError after the whole
    pretraining, or a message naming no key."""
    with pytest.raises(ValueError) as refused:
        compose_spec(override)
    assert str(refused.value) == message


def test_values_of_the_right_type_pass_including_null_and_an_int_for_a_float() -> None:
    spec = compose_spec("pretrain.t_max=null", "pretrain.lr=1", "split_seed=3", "threads=2")
    assert spec.pretrain.t_max is None and spec.pretrain.lr == 1 and spec.split_seed == 3
