"""Submit a grid to SLURM as a DAG of stages, then return (``hydra/launcher=slurm|testcluster|
rtx8000``, and the apptainer profiles through ``launcher.ContainerSlurmLauncher``).

1. one job array of the distinct pretrainings the grid still needs (``stage=pretrain``);
2. per pretraining, one array of its cells with ``--dependency=afterok:<array>_<task>`` (no
   GPU is held while a pretraining runs); supervised cells in one array without dependency;
3. one small CPU job, ``afterany`` on everything, that writes the tables into the run store.

Every cell is composed and checked first (``stage_launcher.py``); jobs run a snapshot of the
code (``snapshot.py``); the submission (stages, job ids, dependencies) is recorded under
``<run store>/submissions/`` for ``python -m cass_hpc.status``. A pretraining that fails cancels
the cells waiting on it (``run.py``). ``hydra.launcher.wait=true`` blocks until every job ended
(for scripts), as hydra-submitit-launcher does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

from cass_hpc import snapshot
from cass_hpc.jobstate import is_done, launch_entry, record_launch, submitted
from cass_hpc.plan import Plan
from cass_hpc.slurm_jobs import job_info
from cass_hpc.stage_launcher import GridError, StageLauncher, completed, failed, sweep_dir

log = logging.getLogger("cass_hpc")
COLLECT_PARAMS = {"gpus_per_node": 0, "slurm_gres": None, "cpus_per_task": 1, "mem_gb": 4,
                  "timeout_min": 30}  # fmt: skip


def collect_stores(store_roots: list[str]) -> int:
    """The collect stage: tables and plots of each run store (``python -m cass_hpc.collect``)."""
    from cass_hpc.collect import main

    return max(main([root]) for root in store_roots)


class DagSlurmLauncher(StageLauncher, SlurmLauncher):
    """hydra-submitit-launcher's ``SlurmLauncher`` submitting stages (module doc)."""

    def __init__(self, wait: bool = False, **params: Any) -> None:
        super().__init__(**params)
        self.wait = wait

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        plan, configs = self.plan(job_overrides)
        self._check_time_limit()
        live_pretrain, live_cells = in_flight(plan.store_roots)
        todo = [c for c in plan.pending_cells() if c.key not in live_cells]
        if not todo:
            queued = len(plan.pending_cells())
            print(f"nothing to submit: of {len(plan.cells)} cell(s) of this grid "
                  f"{len(plan.cells) - queued} are done and {queued} queued or running by an "
                  "earlier submission", flush=True)  # fmt: skip
            return [completed(o, "done") for o in job_overrides]
        folder = sweep_dir(self.config)
        code = snapshot.take(folder / "code")
        submitted = self._submit(
            plan, configs, initial_job_idx, Path(code["snapshot"]), live_pretrain, live_cells
        )
        record = {"code": code, **submitted}
        for root in plan.store_roots:
            record_launch(root, folder, record)
        self._print(record, plan)
        if self.wait:
            return self._wait(job_overrides, plan)
        return [completed(o, "submitted") for o in job_overrides]

    # -- submission -----------------------------------------------------------------------------

    def _executor(self, **overrides: Any) -> submitit.AutoExecutor:
        """An executor with the profile's parameters (as hydra-submitit-launcher builds it)."""
        params = dict(self.params)
        init = {"folder": params.pop("submitit_folder"),
                "slurm_max_num_timeout": params.pop("max_num_timeout", 0)}  # fmt: skip
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        params = {k if k in base else f"slurm_{k}": v for k, v in params.items()}
        params.update(overrides)
        executor = submitit.AutoExecutor(cluster="slurm", **init)
        executor.update_parameters(**params)
        return executor

    def _submit(
        self, plan: Plan, configs: dict, first_idx: int, code: Path,
        live_pretrain: dict[str, str], live_cells: set[str],
    ) -> dict[str, Any]:  # fmt: skip
        setup = [*snapshot.job_environment(code), *(self.params.get("setup") or [])]
        num = first_idx + len(plan.cells)
        pretrainings = []
        pending = [p for p in plan.pending_pretrainings() if p.key not in live_pretrain]
        if pending:
            args = [self.job_args(p.overrides, self.compose(p.overrides), num + i)
                    for i, p in enumerate(pending)]  # fmt: skip
            jobs = self._executor(slurm_setup=setup, name="cass-pretrain").map_array(
                self, *zip(*args, strict=True)
            )
            pretrainings = [launch_entry(p, j.job_id) for p, j in zip(pending, jobs, strict=True)]
        job_of = {**live_pretrain, **{p["key"]: p["job_id"] for p in pretrainings}}
        groups: dict[str | None, list] = {}
        for idx, cell in enumerate(plan.cells, start=first_idx):
            if not cell.done and cell.key not in live_cells:
                groups.setdefault(job_of.get(cell.pretrain or ""), []).append((idx, cell))
        cells = []
        for dependency, members in groups.items():
            extra = {"slurm_dependency": f"afterok:{dependency}"} if dependency else {}
            args = [self.job_args(c.overrides, configs[c.overrides], idx) for idx, c in members]
            executor = self._executor(slurm_setup=setup, name="cass-cell", **extra)
            jobs = executor.map_array(self, *zip(*args, strict=True))
            cells += [
                launch_entry(c, j.job_id, pretrain=c.pretrain, depends_on=dependency)
                for (_, c), j in zip(members, jobs, strict=True)
            ]
        everything = sorted({j["job_id"].split("_")[0] for j in pretrainings + cells})
        collect = self._executor(
            slurm_setup=setup, name="cass-collect",
            slurm_dependency="afterany:" + ":".join(everything), **COLLECT_PARAMS,
        ).submit(collect_stores, [str(r) for r in plan.store_roots])  # fmt: skip
        self._collect = collect  # what wait=true waits for
        return {"pretrainings": pretrainings, "cells": cells,
                "collect": {"job_id": collect.job_id, "after": everything},
                "done": [c.name for c in plan.cells if c.done],
                "in_flight": sorted(live_cells) + sorted(live_pretrain)}  # fmt: skip

    def _check_time_limit(self) -> None:
        limit_s = 60 * float(self.params.get("timeout_min") or 0)
        delay = float(self.params.get("signal_delay_s") or 90)
        if limit_s and limit_s <= delay + 60:
            raise GridError(
                f"hydra.launcher.timeout_min={limit_s / 60:g} leaves no time to save: a job is "
                f"warned signal_delay_s={delay:g} s before its limit and SLURM may warn up to "
                f"60 s early; use timeout_min > {(delay + 60) / 60:g}"
            )

    def _print(self, record: dict[str, Any], plan: Plan) -> None:
        pre, cells = record["pretrainings"], record["cells"]
        code, collect = record["code"], record["collect"]
        waiting = sum(1 for c in cells if c["depends_on"])
        roots = " ".join(str(r) for r in plan.store_roots)
        lines = [
            f"submitted {len(pre)} pretraining job(s) (array {_arrays(pre)}), {len(cells)} cell "
            f"job(s) ({waiting} waiting on their pretraining), collect job "
            f"{collect['job_id']}; {len(record['done'])} cell(s) already done, "
            f"{len(record['in_flight'])} job(s) of an earlier submission still queued or running",
            f"code snapshot: {code['snapshot']} (commit {(code['commit'] or '?')[:12]}"
            f"{', dirty' if code['dirty'] else ''})",
            f"follow:  python -m cass_hpc.status {roots}",
            f"tables:  {' '.join(str(r / 'summary') for r in plan.store_roots)} (when the collect "
            f"job has run)",
            f"cancel:  scancel {' '.join(collect['after'])} {collect['job_id']}",
        ]
        print("\n".join(lines), flush=True)

    def _wait(self, job_overrides: Sequence[Sequence[str]], plan: Plan) -> list[JobReturn]:
        """Block until the collect job (so every job) ended; cells' results from the store."""
        collect = self._collect
        while not collect.done():
            time.sleep(5)
        by_overrides = {c.overrides: c for c in plan.cells}
        returns = []
        for overrides in job_overrides:
            cell = by_overrides.get(tuple(overrides))
            results = cell.dir / "results.json" if cell else None
            if results is None or is_done(results):
                returns.append(completed(overrides, "done"))
            else:
                err = RuntimeError(f"cell {cell.name} has no result; python -m cass_hpc.status "
                                   f"{cell.dir.parent.parent} says why")  # fmt: skip
                returns.append(failed(overrides, err))
        return returns


def in_flight(store_roots: list[Path]) -> tuple[dict[str, str], set[str]]:
    """What earlier submissions to these run stores still have queued or running: pretraining
    key -> its job id (new cells depend on it), and cell keys (not submitted twice)."""
    pre, cells = [], []
    for root in store_roots:
        pre_root, cells_root = submitted(root, _unknown_jobs)
        pre = pre + [p for p in pre_root if p.get("job_id")]  # local launches queue nothing
        cells = cells + [c for c in cells_root if c.get("job_id")]
    info = job_info([j["job_id"] for j in pre + cells])
    live = {j for j, i in info.items() if i.live}
    return ({p["key"]: p["job_id"] for p in pre if p["job_id"] in live},
            {c["key"] for c in cells if c["job_id"] in live})  # fmt: skip


def _unknown_jobs(message: str) -> None:
    """A corrupt launch record: the jobs it queued are not known to this submission."""
    log.warning("%s", message.replace(
        "its stages are shown from their folders only",
        "the jobs it queued are unknown here: a stage still queued by it may be submitted again "
        "(check squeue; delete or fix the record)",
    ))  # fmt: skip


def _arrays(jobs: list[dict[str, Any]]) -> str:
    return ",".join(sorted({j["job_id"].split("_")[0] for j in jobs})) or "-"
