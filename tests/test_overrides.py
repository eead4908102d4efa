"""A mistyped key on the command line is named with the nearest real key, not Hydra's advice to
append it with "+" (which composes and then fails)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, run_module
from hydra import compose, initialize_config_dir

from cass_hpc.overrides import HELP, check_command_line, check_overrides

CONF = REPO / "conf"


def _composed(*overrides: str):  # type: ignore[no-untyped-def]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_a_mistyped_key_names_the_nearest_real_key() -> None:
    with pytest.raises(ValueError) as info:
        check_overrides(["seed=1", "pretrain.epoch=1"], _composed())
    assert str(info.value) == f"unknown key pretrain.epoch; did you mean pretrain.epochs? ({HELP})"


@pytest.mark.parametrize(
    ("override", "nearest"),
    [
        ("pretrian.epochs=3", "pretrain.epochs"),
        ("methd=dino", "method"),
        ("label_fractions=0.1,1.0", "label_fraction"),
        ("finetune.batchsize=8", "finetune.batch_size"),
    ],
)
def test_the_nearest_key_is_a_sibling_or_the_closest_path(override: str, nearest: str) -> None:
    with pytest.raises(ValueError, match=f"; did you mean {nearest}\\? "):
        check_overrides([override], _composed())


def test_a_key_with_nothing_near_gets_the_help_pointer_only() -> None:
    with pytest.raises(ValueError) as info:  # DINO's key while the method is CASS
        check_overrides(["method.params.teacher_temp=0.1"], _composed())
    assert str(info.value) == f"unknown key method.params.teacher_temp; {HELP}"


def test_appends_groups_hydra_settings_and_sweeps_of_real_keys_pass() -> None:
    cfg = _composed("experiment=demo")
    check_overrides(
        [
            "+model.vit.kwargs.depth=2",
            "++pretrain.brand_new=1",
            "method=dino",
            "experiment=demo",
            "hydra/launcher=slurm",
            "hydra.sweeper.max_batch_size=2",
            "label_fraction=0.1,1.0",
            "dataset.path=/data/mine",
            "weights.cnn=/w/resnet50.pth",
        ],
        cfg,
    )


def test_the_command_line_knows_the_keys_of_every_swept_group_choice() -> None:
    check_command_line(["-m", "method=cass,dino", "method.params.teacher_temp=0.1"], CONF)
    check_command_line(["-m", "experiment=demo", "pretrain.epochs=1"], CONF)
    check_command_line(["--help", "pretrain.epoch=1"], CONF)  # help is Hydra's
    with pytest.raises(ValueError, match="^unknown key pretrain.epoch; did you mean"):
        check_command_line(["-m", "method=cass,dino", "pretrain.epoch=1"], CONF)


def test_run_with_a_mistyped_key_exits_2_with_one_line_not_hydras_hint(tmp_path: Path) -> None:
    proc = run_module("cass_hpc.run", f"runs_dir={tmp_path}", "pretrain.epoch=1", timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"error: unknown key pretrain.epoch; did you mean pretrain.epochs? ({HELP})\n" in (
        proc.stderr
    )
    assert "+pretrain.epoch" not in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing started


def test_an_unknown_group_choice_gets_one_line_with_the_choices_not_hydras_search_path() -> None:
    with pytest.raises(ValueError) as refused:
        check_command_line(["method=cas"], CONF)
    assert str(refused.value) == (
        "unknown method 'cas'; choose from byol, cass, cass_plus, dino, mae, simclr, supervised, "
        "vicreg (did you mean cass?)"
    )
    with pytest.raises(ValueError, match="^unknown method 'dinoo'.*did you mean dino"):
        check_command_line(["-m", "method=cass,dinoo"], CONF)  # a sweep's values too
    check_command_line(["-m", "method=cass,dino", "model=paper_pair"], CONF)  # real choices pass


@pytest.mark.parametrize(
    ("argv", "store"),
    [
        (["runs_dir={runs}"], "runs/default"),
        (["-m", "runs_dir={runs}/sub", "seed=0,1"], "runs/sub/default"),
    ],
)
def test_item6_a_file_where_runs_dir_belongs_is_one_line_before_hydra_makes_a_folder(
    tmp_path: Path, argv: list[str], store: str
) -> None:
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    with pytest.raises(ValueError) as refused:
        check_command_line([a.format(runs=runs) for a in argv], CONF)
    assert str(refused.value) == (
        f"{runs} is a file where the run store needs a folder (for {tmp_path / store}); "
        "move the file away or choose another runs_dir"
    )
