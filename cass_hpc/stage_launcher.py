"""What every cass launcher does before it runs anything: compose and check each cell of the
grid, and plan it as stages (``plan.py``). Hydra-facing; the SLURM and local launchers build on
it (``dag_launcher.py``, ``local_launcher.py``).

Each job gets the configuration composed here, at submission, instead of composing it again
when it starts (hydra-submitit-launcher's default): with the code snapshot that makes a job
independent of the checkout it was submitted from.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, run_job, setup_globals
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import DictConfig, OmegaConf, open_dict

from cass_hpc import preempt, resolvers, store  # noqa: F401 - ${launch_id:} in conf/config.yaml
from cass_hpc.plan import Plan, describe, plan_grid

log = logging.getLogger("cass_hpc")


class GridError(SystemExit):
    """A grid that cannot be run as given: one ``error:`` line, nothing submitted, exit 2."""

    def __init__(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr, flush=True)
        super().__init__(2)


class StageLauncher(BaseSubmititLauncher):
    """hydra-submitit-launcher's base with the grid composed, checked and planned up front."""

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        """The job's whole configuration (Hydra's per-job composition) for ``overrides``."""
        assert self.hydra_context is not None and self.config is not None
        try:
            return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        except Exception as err:  # noqa: BLE001 - Hydra raises several kinds; all mean "bad key"
            last = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise GridError(f"cell [{' '.join(overrides)}]: {last}") from None

    def plan(self, job_overrides: Sequence[Sequence[str]]) -> tuple[Plan, dict[tuple, DictConfig]]:
        """Compose, check and plan every cell; a bad one raises GridError (nothing submitted,
        and the sweep folder Hydra made for it, holding only multirun.yaml, removed)."""
        try:
            return self._plan(job_overrides)
        except GridError:
            assert self.config is not None
            store.remove_unused(Path(str(self.config.hydra.sweep.dir)), {"multirun.yaml"})
            raise

    def _plan(self, job_overrides: Sequence[Sequence[str]]) -> tuple[Plan, dict[tuple, DictConfig]]:
        from cass_hpc.run import spec_from_config  # the entry point's translation, not Hydra's

        configs, items = {}, []
        for overrides in job_overrides:
            cfg = self.compose(overrides)
            try:
                spec = spec_from_config(task_config(cfg))
            except Exception as err:  # noqa: BLE001 - missing values, bad types
                raise GridError(f"cell [{' '.join(overrides)}]: {err}") from None
            configs[tuple(overrides)] = cfg
            items.append((list(overrides), spec))
        try:
            plan = plan_grid(items)
        except ValueError as err:
            raise GridError(str(err)) from None
        log.info("grid of %s", describe(plan))
        return plan, configs

    def job_args(self, overrides: Sequence[str], cfg: DictConfig, job_num: int) -> tuple[Any, ...]:
        """The arguments of ``__call__`` for one job (what submitit pickles); the sweep folder
        is resolved here, in the launching process (``${launch_id:}``, ``${now:}``)."""
        assert self.config is not None
        cfg = OmegaConf.create(cfg)
        with open_dict(cfg):
            cfg.hydra.sweep.dir = str(self.config.hydra.sweep.dir)
        return (list(overrides), "hydra.sweep.dir", job_num, f"job_id_for_{job_num}",
                Singleton.get_state(), cfg)  # fmt: skip

    def __call__(  # type: ignore[override]
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[type, Singleton],
        sweep_config: DictConfig | None = None,
    ) -> JobReturn:
        """Run one job (inside it) with the configuration composed at submission."""
        import submitit

        assert self.hydra_context is not None and self.task_function is not None
        Singleton.set_state(singleton_state)
        setup_globals()
        preempt.set_requeue_budget(self.params.get("max_num_timeout"))
        if sweep_config is None:  # a job pickled by an older submission
            sweep_config = self.compose(sweep_overrides)
        sweep_config = OmegaConf.create(sweep_config)  # a copy: a requeue starts from the same
        with open_dict(sweep_config.hydra.job) as job:
            job.id = submitit.JobEnvironment().job_id
            job.num = job_num
        result = run_job(
            hydra_context=self.hydra_context, task_function=self.task_function,
            config=sweep_config, job_dir_key=job_dir_key, job_subdir_key="hydra.sweep.subdir",
        )  # fmt: skip
        if result.status == JobStatus.FAILED:  # the job fails (SLURM: FAILED, so no afterok)
            raise result._return_value
        return result


def task_config(cfg: DictConfig) -> DictConfig:
    """What the task function receives: the job's config without its ``hydra`` node."""
    task = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(task):
        task.pop("hydra", None)
    return task


def completed(overrides: Sequence[str], value: Any) -> JobReturn:
    """A JobReturn that tells Hydra's sweeper this cell is taken care of."""
    return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=value)


def failed(overrides: Sequence[str], err: BaseException) -> JobReturn:
    return JobReturn(overrides=list(overrides), status=JobStatus.FAILED, _return_value=err)


def sweep_dir(config: DictConfig) -> Path:
    path = Path(str(config.hydra.sweep.dir)).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
