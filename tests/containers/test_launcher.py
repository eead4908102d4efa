"""hydra/launcher=apptainer: the SLURM profiles whose jobs start Python inside the image.

The grid is composed and launched through the real hydra-submitit-launcher and submitit code up
to the sbatch call, which is replaced by one that keeps the script (no SLURM here).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import submitit
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from submitit.slurm.slurm import SlurmExecutor

from cass_hpc.launcher import REPO, WRAPPER, ContainerSlurmLauncher, submitit_python

CONTAINER_KEYS = {"image", "binds", "python"}


class Submitted(Exception):
    """Raised instead of running sbatch; carries the sbatch script."""


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An image file, a fake ``srun`` (submitit looks for one) and an sbatch keeping its script."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{Path('/usr/bin')}:{Path('/bin')}")
    (tmp_path / "cass.sif").write_bytes(b"")
    monkeypatch.setenv("CASS_IMAGE", str(tmp_path / "cass.sif"))
    monkeypatch.setenv("CASS_BINDS", str(tmp_path))

    def submit(self: SlurmExecutor, command: str) -> None:
        raise Submitted(self._make_submission_file_text(command, "test"))

    monkeypatch.setattr(SlurmExecutor, "_submit_command", submit)
    return tmp_path


@pytest.fixture
def hydra_config() -> Iterator[None]:
    yield
    HydraConfig.instance().cfg = None  # type: ignore[assignment]


def composed(*overrides: str) -> DictConfig:
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def launcher_keys(cfg: DictConfig) -> dict:
    keys = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert isinstance(keys, dict)
    return keys


@pytest.mark.parametrize(
    ("container", "plain"), [("apptainer", "slurm"), ("apptainer_rtx8000", "rtx8000")]
)
def test_container_profiles_keep_their_slurm_profile_and_add_the_image_keys(
    container: str, plain: str, cluster: Path, hydra_config: None
) -> None:
    sweep = f"hydra.sweep.dir={cluster}/sweep"  # not ${now:...}: the two could differ by 1 s
    with_image = launcher_keys(composed(f"hydra/launcher={container}", sweep))
    without = launcher_keys(composed(f"hydra/launcher={plain}", sweep))
    assert with_image.pop("_target_") == "hydra_plugins.cass_hpc_launchers.ContainerStagesLauncher"
    assert {k: with_image.pop(k) for k in sorted(CONTAINER_KEYS)} == {
        "binds": str(cluster),
        "image": str(cluster / "cass.sif"),
        "python": None,
    }
    without.pop("_target_")
    assert with_image == without


def launch(cfg: DictConfig, job_overrides: list[list[str]]) -> str:
    """The sbatch script of a job array the launcher's executor submits (the stage DAG's
    submission itself is tested on a real cluster in tests/test_slurm.py)."""
    launcher = instantiate(cfg.hydra.launcher)
    assert isinstance(launcher, ContainerSlurmLauncher)
    launcher.setup(hydra_context=None, task_function=print, config=cfg)  # type: ignore[arg-type]
    with pytest.raises(Submitted) as submitted:
        with submitit_python(launcher.python or launcher._python_checked(job_overrides)):
            launcher._executor().map_array(print, job_overrides)
    return str(submitted.value)


def test_every_job_of_a_grid_starts_python_inside_the_image(
    cluster: Path, hydra_config: None
) -> None:
    cfg = composed("hydra/launcher=apptainer", f"runs_dir={cluster}/runs")
    script = launch(cfg, [[f"dataset.path={cluster}/data", "seed=0"], ["seed=1"]])
    srun = [line for line in script.splitlines() if line.startswith("srun ")]
    assert len(srun) == 1 and "#SBATCH --array=0-1%2" in script
    image, binds = cluster / "cass.sif", cluster
    assert (
        f" {WRAPPER} --image {image} --bind {binds} -- -u -m submitit.core._submit {cluster}/runs/"
        in srun[0]
    )
    assert submitit.AutoExecutor is submitit.auto.auto.AutoExecutor  # the stand-in is undone


def test_a_python_command_given_in_the_config_is_used_as_it_is(
    cluster: Path, hydra_config: None
) -> None:
    cfg = composed("hydra/launcher=apptainer", f"runs_dir={cluster}", "hydra.launcher.python=py3")
    assert " py3 -u -m submitit.core._submit " in launch(cfg, [["seed=0"]])


def test_a_data_path_no_bind_covers_fails_before_anything_is_submitted(
    cluster: Path, hydra_config: None
) -> None:
    cfg = composed("hydra/launcher=apptainer", f"runs_dir={cluster}")
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=print, config=cfg)
    with pytest.raises(ValueError, match=r"^/elsewhere/data \(runs_dir / dataset.path / "
                       r"hydra.sweep.dir\) would not be visible inside the image: add it to "
                       r"CASS_BINDS"):  # fmt: skip
        launcher.launch([["dataset.path=/elsewhere/data"]], initial_job_idx=0)


def test_a_missing_image_or_bind_is_named_at_submission(
    cluster: Path, hydra_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CASS_IMAGE")
    cfg = composed("hydra/launcher=apptainer", f"runs_dir={cluster}")
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=print, config=cfg)
    with pytest.raises(ValueError, match="^hydra.launcher.image is not set: export CASS_IMAGE="):
        launcher.launch([["seed=0"]], initial_job_idx=0)
    launcher.image = str(cluster / "missing.sif")
    with pytest.raises(ValueError, match=r"missing.sif is not a file; build it with make"):
        launcher.launch([["seed=0"]], initial_job_idx=0)
    launcher.image, launcher.binds = str(cluster / "cass.sif"), f"{cluster},/no/such/dir"
    with pytest.raises(ValueError, match=r"CASS_BINDS\): /no/such/dir does not exist on this"):
        launcher.launch([["seed=0"]], initial_job_idx=0)
