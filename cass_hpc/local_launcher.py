"""Run a grid's stages on this machine (``hydra/launcher=local``, ``make demo``): pretrainings
first, each cell as soon as its own pretraining is done, ``parallelism`` jobs at a time and
every slot kept busy (Hydra's ``max_batch_size`` waits for the slowest job of each batch).
``parallelism`` unset: as many jobs as the machine's cores allow at ``threads`` per job.

Jobs are submitit local processes, as with hydra-submitit-launcher's ``submitit_local``. A
failed pretraining fails its cells without running them ("blocked by ..."); SIGTERM or Ctrl-C
stops every running job (they record ``interrupted``) before the launcher exits. What the grid
will run is recorded at launch under ``<run store>/submissions/`` (as the SLURM launcher does),
so that ``python -m cass_hpc.status`` lists the stages not yet started as pending.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import submitit
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher
from omegaconf import DictConfig

from cass_hpc import jobstate
from cass_hpc.plan import CellStage, Plan, PretrainStage
from cass_hpc.stage_launcher import StageLauncher, completed, failed, sweep_dir

log = logging.getLogger("cass_hpc")
POLL_S = 0.5


class BlockedError(RuntimeError):
    """A cell not run because the pretraining it needs failed."""


class DagLocalLauncher(StageLauncher, LocalLauncher):
    def __init__(self, parallelism: int | None = None, **params: Any) -> None:
        super().__init__(**params)
        if parallelism is not None and parallelism < 1:
            raise ValueError(f"hydra.launcher.parallelism must be >= 1, got {parallelism}")
        self.parallelism = parallelism

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run one job (inside it). SIGTERM (the launcher stopping it) and SIGINT (a terminal's
        Ctrl-C, also when the grid was started with SIGINT ignored, ``cmd &`` in a script) stop
        it as Ctrl-C does: the stage records ``interrupted`` and keeps its checkpoint."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
        return super().__call__(*args, **kwargs)

    def slots(self) -> int:
        """Jobs at once: as configured, else this machine's cores ÷ each job's threads."""
        if self.parallelism:
            return self.parallelism
        cores = os.cpu_count() or 1
        assert self.config is not None
        return max(1, cores // int(self.config.get("threads") or cores))

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        plan, configs = self.plan(job_overrides)
        # every stage's configuration now, at launch: a pretraining composed only when its slot
        # frees would read the config files as they are then (edited meanwhile: another store)
        configs.update(
            {p.overrides: self.compose(p.overrides) for p in plan.pending_pretrainings()}
        )
        record_plan(plan, sweep_dir(self.config))
        executor = submitit.AutoExecutor(cluster="local", folder=self.params["submitit_folder"])
        executor.update_parameters(timeout_min=self.params.get("timeout_min", 120))
        slots = self.slots()
        log.info("running %d job(s) at a time", slots)
        outcome = run_stages(plan, configs, self._submitter(executor, initial_job_idx, plan), slots)
        by_overrides = {c.overrides: c for c in plan.cells}
        returns = []
        for overrides in job_overrides:
            cell = by_overrides.get(tuple(overrides))
            result = outcome.get(cell.key) if cell else None
            returns.append(result if result is not None else completed(overrides, "done"))
        return returns

    def _submitter(self, executor: Any, first: int, plan: Plan) -> Any:
        nums = {c.key: first + i for i, c in enumerate(plan.cells)}
        nums.update({k: first + len(plan.cells) + i for i, k in enumerate(plan.pretrainings)})

        def submit(stage: PretrainStage | CellStage, cfg: DictConfig) -> submitit.Job:
            # The job's controller (submitit's) inherits SIGINT ignored: a terminal's Ctrl-C
            # reaches this launcher and the job, never the controller, whose traceback would
            # land on the terminal. The launcher stops it with SIGTERM (_stop_jobs_on_exit).
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                return executor.submit(self, *self.job_args(stage.overrides, cfg, nums[stage.key]))
            finally:
                signal.signal(signal.SIGINT, previous)

        return submit


def record_plan(plan: Plan, sweep: Path) -> None:
    """Record what this launch will run (its pending stages, as ``dag_launcher`` records a SLURM
    submission, with no job ids) in each run store, with this launcher's host and pid: ``status``
    lists a stage not started yet as pending while the launcher lives."""
    launcher = {"host": socket.gethostname(), "pid": os.getpid()}
    pretrainings, cells = plan.pending_pretrainings(), plan.pending_cells()
    for root in plan.store_roots:
        jobstate.record_launch(root, sweep, {
            "local": launcher,
            "pretrainings": [jobstate.launch_entry(p, None) for p in pretrainings
                             if p.dir.is_relative_to(root)],
            "cells": [jobstate.launch_entry(c, None, pretrain=c.pretrain, depends_on=None)
                      for c in cells if c.dir.is_relative_to(root)],
            "done": [c.name for c in plan.cells if c.done and c.dir.is_relative_to(root)],
        })  # fmt: skip


def run_stages(
    plan: Plan, configs: dict[tuple, DictConfig], submit: Any, parallelism: int
) -> dict[str, JobReturn]:
    """Run the plan's pending stages, at most ``parallelism`` at once; each cell's JobReturn."""
    queue: list[PretrainStage | CellStage] = [*plan.pending_pretrainings(),
                                              *plan.pending_cells()]  # fmt: skip
    done_pretrain = {k for k, p in plan.pretrainings.items() if p.done}
    failed_pretrain: dict[str, str] = {}
    running: dict[str, tuple[PretrainStage | CellStage, submitit.Job]] = {}
    outcome: dict[str, JobReturn] = {}
    finished, total = 0, len(queue)

    def ready(stage: PretrainStage | CellStage) -> bool:
        return isinstance(stage, PretrainStage) or stage.pretrain in (None, *done_pretrain)

    with _stop_jobs_on_exit(running):
        while queue or running:
            for stage in [
                s for s in queue if isinstance(s, CellStage) and s.pretrain in failed_pretrain
            ]:
                queue.remove(stage)
                name = plan.pretrainings[stage.pretrain].name
                why = failed_pretrain[stage.pretrain]
                error = BlockedError(f"blocked by pretraining {name}: {why}")
                outcome[stage.key] = failed(stage.overrides, error)
                finished += 1
                log.info("%d/%d BLOCKED cell %s: %s", finished, total, stage.name, error)
                jobstate.record(stage.dir, "blocked", error=str(error),
                                overrides=list(stage.overrides))  # fmt: skip
            while len(running) < parallelism and (nxt := next(filter(ready, queue), None)):
                queue.remove(nxt)
                running[nxt.key] = (nxt, submit(nxt, configs[nxt.overrides]))
            if not running and queue and not any(map(ready, queue)):
                raise RuntimeError(f"stages that can never start: {[s.name for s in queue]}")
            time.sleep(POLL_S)
            for key, (stage, job) in list(running.items()):
                if not job.done():
                    continue
                del running[key]
                result = _result(stage, job)
                finished += 1
                ok = result.status == JobStatus.COMPLETED
                log.info("%d/%d %s %s %s", finished, total, "done" if ok else "FAILED",
                         "pretraining" if isinstance(stage, PretrainStage) else "cell",
                         stage.name)  # fmt: skip
                if isinstance(stage, PretrainStage):
                    if result.status == JobStatus.COMPLETED:
                        done_pretrain.add(key)
                    else:
                        failed_pretrain[key] = jobstate.error_line(result._return_value)
                else:
                    outcome[key] = result
    return outcome


def _result(stage: PretrainStage | CellStage, job: submitit.Job) -> JobReturn:
    try:
        result = job.results()[0]
    except Exception as err:  # noqa: BLE001 - the job died (killed, timed out): its error
        return failed(stage.overrides, err)
    if not isinstance(result, JobReturn):
        return completed(stage.overrides, result)
    return result


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _stop_jobs_on_exit(running: dict[str, tuple[Any, submitit.Job]]) -> Iterator[None]:
    """On SIGTERM (or Ctrl-C) stop every running job before leaving: none keeps writing."""

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    except KeyboardInterrupt:
        deadline, again = time.monotonic() + 30, 0.0
        while time.monotonic() < deadline and not all(j.done() for _, j in running.values()):
            if time.monotonic() >= again:  # again: a job still starting may not hear the first
                for _, job in running.values():  # its controller forwards SIGTERM to the job,
                    with contextlib.suppress(ProcessLookupError):  # which records
                        os.kill(int(job.job_id), signal.SIGTERM)  # "interrupted" and exits
                again = time.monotonic() + 2
            time.sleep(POLL_S)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
