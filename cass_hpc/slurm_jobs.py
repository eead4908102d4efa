"""What SLURM says about jobs (``squeue`` for live ones, ``sacct`` for ended ones), and the
cancelling of jobs whose dependency can never be satisfied. Every function returns nothing
useful (``{}``, ``None``) where SLURM's commands are missing, so callers work without SLURM."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)
LIVE = ("PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "CONFIGURING", "COMPLETING")


@dataclass(frozen=True)
class JobInfo:
    state: str  # SLURM's state: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    reason: str = ""  # squeue's reason for a pending job (Dependency, DependencyNeverSatisfied)

    @property
    def live(self) -> bool:
        return self.state in LIVE


def _run(cmd: list[str]) -> str:
    if not shutil.which(cmd[0]):
        return ""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return proc.stdout if proc.returncode == 0 else ""


def job_info(job_ids: list[str]) -> dict[str, JobInfo]:
    """SLURM's view of each job id (``123`` or an array task ``123_4``); ids SLURM does not
    know are left out."""
    if not job_ids:
        return {}
    masters = sorted({j.split("_")[0] for j in job_ids})
    found: dict[str, JobInfo] = {}
    ended = _run(["sacct", "-n", "-X", "-P", "-j", ",".join(masters), "-o", "JobID,State"])
    for line in ended.splitlines():
        job, _, state = line.partition("|")
        if job and state:
            found[job] = JobInfo(state.split()[0].rstrip("+"))
    live = _run(["squeue", "-h", "-r", "-j", ",".join(masters), "-o", "%i|%T|%r"])
    for line in live.splitlines():  # squeue -r lists each pending array task on its own line
        job, state, reason = (line.split("|") + ["", ""])[:3]
        if job:
            found[job] = JobInfo(state, "" if reason in ("None", "(null)") else reason)
    return {j: found[j] for j in job_ids if j in found}


def current_job_id() -> str | None:
    """This job's id as dependencies name it: ``ARRAY_TASK`` inside an array task."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def cancel_dependents(job_id: str) -> list[str]:
    """Cancel the pending jobs that wait on ``job_id`` finishing well (``afterok``): it failed,
    so they would pend forever (``DependencyNeverSatisfied``). Returns their ids."""
    listing = _run(["squeue", "-h", "-r", "-t", "PENDING", "-o", "%i|%E"])
    dependents = [
        line.split("|")[0]
        for line in listing.splitlines()
        if f"afterok:{job_id}(" in line.partition("|")[2]
    ]
    if dependents:
        _run(["scancel", *dependents])
        log.warning("cancelled %d job(s) that needed this one: %s", len(dependents),
                    " ".join(dependents))  # fmt: skip
    return dependents
