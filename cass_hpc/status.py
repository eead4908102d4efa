"""``python -m cass_hpc.status RUNDIR``: every stage of a grid — its pretrainings and its
cells — pending, waiting (on its pretraining), running, requeued, done, failed (or cancelled,
interrupted) or blocked (its pretraining failed), with a failure's last error line and its log,
and where a running stage runs.

RUNDIR is a run store (``runs/<experiment_name>``). Stages report their own state
(``state.json`` in ``cells/*`` and ``pretrain/*``, see `jobstate`); what a launch will run is
recorded at launch (``submissions/*.json``: the SLURM launcher's job ids, the local launcher's
plan). A stage that has not reported is found by asking SLURM about its job id or, for a local
grid, by the pid of its submitit job (``hydra/<sweep>/.submitit``) or of its launcher. A stage
whose process is gone without a result was stopped (Ctrl-C, kill): ``interrupted``; one that
never started and whose grid has ended is ``missing``.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cass_hpc.jobstate import (
    STATE_FILE,
    STATE_SHAPE,
    SUBMISSIONS,
    read_shaped,
    submitted,
    unusable,
)
from cass_hpc.slurm_jobs import JobInfo, job_info

ORDER = ("failed", "cancelled", "interrupted", "blocked", "requeued", "running", "waiting",
         "pending", "missing", "done")  # fmt: skip
RECORDS = {"pretrain": "pretrain.json", "cell": "results.json"}


def _pid_alive(pid: int) -> bool | None:
    """Whether process ``pid`` on this machine runs (a zombie has ended; None: no /proc)."""
    if not os.path.isdir("/proc"):
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _alive(state: dict[str, Any], slurm: dict[str, JobInfo]) -> bool | None:
    """Whether the process that wrote ``state`` (or a launcher's ``{host, pid}``) still runs
    (None when it cannot be known: another host, a job SLURM does not know)."""
    if job := state.get("slurm_job_id"):
        info = slurm.get(str(job))
        return None if info is None else info.live
    if state.get("host") == socket.gethostname() and state.get("pid"):
        return _pid_alive(int(state["pid"]))
    return None


def _where(state: dict[str, Any]) -> str:
    """Where a running stage runs: its SLURM job, else its pid and host."""
    if job := state.get("slurm_job_id"):
        return f"SLURM job {job} on {state.get('host', '?')}"
    return f"pid {state['pid']} on {state.get('host', '?')}" if state.get("pid") else ""


RESUME = "rerun the same command to resume"


def classify(
    directory: Path, stage: str = "cell", slurm: dict[str, JobInfo] | None = None,
    job: str | None = None, planned: dict[str, Any] | None = None,
    started: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One row of the status table for a stage's directory (``job``: its SLURM job id;
    ``planned``: its entry in a local launch's plan; ``started``: the submitit job that local
    launch started for it, ``{"job", "log"}``)."""
    slurm = slurm or {}
    row: dict[str, Any] = {"stage": stage, "cell": directory.name, "error": "", "log": "",
                           "job": job or "", "where": ""}  # fmt: skip
    path = directory / STATE_FILE
    try:
        state, corrupt = (read_shaped(path, STATE_SHAPE) if path.exists() else {}), ""
    except ValueError as err:  # shown, not hidden: the stage's state is unknown until removed
        state, corrupt = {}, f"{err}; delete it, then rerun the grid to run the stage again"
    row["log"] = state.get("log") or ""
    row["overrides"] = tuple(state.get("overrides") or ())
    row["aliases"] = [tuple(a) for a in state.get("aliases", [])]  # other jobs that found it done
    record = directory / RECORDS[stage]
    if why := unusable(record):  # the one notion of done (jobstate), as run and collect see it
        return {**row, "status": "failed", "error": why}
    if record.exists():
        return {**row, "status": "done"}
    if corrupt:
        return {**row, "status": "failed", "error": corrupt}
    status = state.get("state")
    info = slurm.get(job or str(state.get("slurm_job_id") or ""))
    if status is None and job:  # the job never reported: SLURM's word
        if info is None:
            return {**row, "status": "pending"}
        if info.state == "PENDING":  # a dependency not yet met, or never to be met
            waiting = {"Dependency": "waiting", "DependencyNeverSatisfied": "blocked"}
            return {**row, "status": waiting.get(info.reason, "pending")}
        if info.live:
            return {**row, "status": "running"}
        status = "cancelled" if info.state == "CANCELLED" else "failed"
        return {**row, "status": status, "error": f"job ended {info.state} without a result"}
    if status is None:
        return {**row, **_unreported(directory, planned, started)}
    if status == "interrupted":  # Ctrl-C: the job recorded it
        return {
            **row,
            "status": status,
            "error": "stopped by Ctrl-C; run the same command to resume",
        }
    if status == "running":
        alive = _alive(state, slurm)
        slurm_state = info.state if info else None
        if alive is False and slurm_state:
            status = "cancelled" if slurm_state == "CANCELLED" else "failed"
            row["error"] = f"job gone without a result (SLURM: {slurm_state})"
        elif alive is False:  # a local process stopped before it could record why
            status = "interrupted"
            row["error"] = (f"process {state.get('pid')} is gone without a result (stopped or "
                            f"killed); {RESUME}")  # fmt: skip
        else:
            row["where"] = _where(state)
            if state.get("attempt", 1) > 1:
                status = "requeued"
    if status in ("failed", "blocked") and not row["error"]:
        row["error"] = state.get("error", "")
    return {**row, "status": status}


def _unreported(
    directory: Path, planned: dict[str, Any] | None, started: dict[str, str] | None
) -> dict[str, Any]:
    """Status of a stage with no state and no SLURM job: a local launch started it (its submitit
    job), planned it (its launcher), or neither (a single run's or an older grid's leftovers)."""
    launcher = (planned or {}).get("local") or {}
    if started is not None:  # submitit started its process; it had not reported yet
        where = {"log": started["log"]}  # the job column is SLURM's: a local pid goes below
        pid = started["job"] if started["job"].isdigit() else None  # a local job's id: its pid
        alive = _alive({"host": launcher.get("host"), "pid": pid}, {})
        if alive is False:
            return {**where, "status": "interrupted",
                    "error": f"stopped before it reported (Ctrl-C, kill); {RESUME}"}  # fmt: skip
        return {**where, "status": "running", "where": f"starting, pid {started['job']}"}
    if planned is not None:
        if _alive(launcher, {}) is False:
            return {"status": "missing", "error": f"never started: its grid (pid "
                    f"{launcher.get('pid')}) has ended; rerun the grid to run it"}  # fmt: skip
        return {"status": "pending"}  # or waiting on its pretraining: status_rows decides
    if checkpoints := sorted(directory.glob("*checkpoint.pt")):
        return {"status": "interrupted",
                "error": f"started and stopped ({checkpoints[0].name} kept); {RESUME}"}  # fmt: skip
    return {"status": "missing"}


def submissions(
    rundir: Path, warn: Callable[[str], None] | None = None
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Pretrainings and cells by directory name, as the launcher recorded them (newest wins);
    a corrupt launch record is left out, with one line to ``warn``."""
    pretrainings, cells = submitted(rundir, warn)
    return _by_name(pretrainings), _by_name(cells)


def _by_name(items: list[dict]) -> dict[str, dict]:
    return {Path(item["dir"]).name: item for item in items}


def local_jobs(pattern_root: Path, pattern: str) -> dict[tuple[str, ...], dict[str, str]]:
    """The jobs submitit was handed locally (``*_submitted.pkl`` under ``pattern_root`` matching
    ``pattern``), by their overrides: ``{"job": its id (the pid of its process), "log"}``."""
    import cloudpickle

    found = {}
    for path in sorted(pattern_root.glob(pattern)):
        try:
            with open(path, "rb") as handle:
                overrides = tuple(cloudpickle.load(handle).args[0])
        except Exception:  # noqa: BLE001 - a pickle we cannot read names no stage
            continue
        if overrides and all(isinstance(o, str) and "=" in o for o in overrides):
            job = path.parent.name  # not the collect job (its argument is a list of stores)
            found[overrides] = {"job": job, "log": str(path.parent / f"{job}_0_log.out")}
    return found


def submitted_overrides(rundir: Path) -> list[tuple[str, ...]]:
    """The overrides of every cell job submitit was handed locally under ``rundir/hydra``."""
    jobs = local_jobs(rundir, "hydra/*/.submitit/**/*_submitted.pkl")
    return [o for o in jobs if "stage=pretrain" not in o]  # plan.PRETRAIN_STAGE (no torch here)


def status_rows(rundir: Path, warn: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Every stage of run store ``rundir``: its directories, its launches' plans and jobs (a
    corrupt launch record: one line to ``warn``, default the log)."""
    pre_jobs, cell_jobs = submissions(rundir, warn)
    slurm = job_info([j["job_id"] for j in (*pre_jobs.values(), *cell_jobs.values())
                      if j.get("job_id")])  # fmt: skip
    sweeps: dict[str, dict] = {}

    def row_of(directory: Path, stage: str, job: dict[str, Any]) -> dict[str, Any]:
        started = None
        if sweep := job.get("sweep_dir"):  # a local launch: the job it started for the stage
            if sweep not in sweeps:
                sweeps[sweep] = local_jobs(Path(sweep), ".submitit/**/*_submitted.pkl")
            started = sweeps[sweep].get(tuple(job.get("overrides") or ()))
        planned = job if job.get("local") else None
        row = classify(directory, stage, slurm, job.get("job_id"), planned, started)
        row["overrides"] = row["overrides"] or tuple(job.get("overrides") or ())
        return row

    pre_dirs = {d.name: d for d in sorted((rundir / "pretrain").glob("*")) if d.is_dir()}
    pre_dirs.update({n: Path(j["dir"]) for n, j in pre_jobs.items() if n not in pre_dirs})
    pre_rows = {n: row_of(d, "pretrain", pre_jobs.get(n, {})) for n, d in pre_dirs.items()}
    cell_dirs = {d.name: d for d in sorted((rundir / "cells").glob("*")) if d.is_dir()}
    cell_dirs.update({n: Path(j["dir"]) for n, j in cell_jobs.items() if n not in cell_dirs})
    rows = list(pre_rows.values())
    by_key = {j["key"]: n for n, j in pre_jobs.items()}
    for name, directory in cell_dirs.items():
        job = cell_jobs.get(name, {})
        row = row_of(directory, "cell", job)
        parent = pre_rows.get(by_key.get(job.get("pretrain") or "", ""))
        parent_failed = parent and parent["status"] in ("failed", "cancelled", "interrupted")
        if parent_failed and row["status"] in ("waiting", "pending", "blocked", "cancelled"):
            why = f"blocked by pretraining {parent['cell']}: {parent['error']}"
            row = {**row, "status": "blocked", "error": why}
        elif parent and parent["status"] != "done" and row["status"] == "pending":
            row = {**row, "status": "waiting"}  # a local grid starts it after its pretraining
        rows.append(row)
    started = {r["overrides"] for r in rows} | {a for r in rows for a in r["aliases"]}
    for overrides in submitted_overrides(rundir):  # a local launch that recorded no plan
        if overrides not in started:
            swept = " ".join(
                o for o in overrides if not o.startswith(("runs_dir=", "dataset.path="))
            )
            rows.append({"stage": "cell", "cell": swept, "status": "missing", "error": "",
                         "log": "", "job": "", "where": ""})  # fmt: skip
    return sorted(rows, key=lambda r: (r["stage"] != "pretrain", ORDER.index(r["status"]),
                                       r["cell"]))  # fmt: skip


def detail_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Below the table: why each stage failed, stopped or never ran, and where each running one
    runs, with its log; nothing for a stage done, pending or waiting."""
    lines = []
    for r in rows:
        if r["status"] in ("done", "pending", "waiting"):
            continue
        detail = r["error"] or r.get("where") or (f"job {r['job']}" if r.get("job") else "")
        if r["status"] in ("failed", "cancelled") and not detail:
            detail = "(no error recorded)"
        if detail or r["log"]:
            lines.append(f"{r['status']} {r['cell']}" + (f": {detail}" if detail else "")
                         + (f"\n  log: {r['log']}" if r["log"] else ""))  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cass_hpc.status",
        description="Stages of a grid (a run store, e.g. runs/demo): each pretraining and cell "
        "pending, waiting (on its pretraining), running, requeued, done, failed/cancelled/"
        "interrupted or blocked (by a failed pretraining), with the last error line and the log "
        "path below the table, and where each running one runs. interrupted: started, then "
        "stopped (Ctrl-C, kill); rerun the same command to resume. missing: planned or "
        "submitted, never started, and its grid has ended; rerun the grid. Exit code 1 if any "
        "failed, was cancelled or is blocked, or a launch record (submissions/*.json) is "
        "corrupt (named in one line; the rest is shown).",
    )
    parser.add_argument("rundir", type=Path, help="run store: runs/<experiment_name>")
    args = parser.parse_args(argv)
    console = Console()
    if not any((args.rundir / d).is_dir() for d in ("cells", "pretrain", "hydra", SUBMISSIONS)):
        console.print(f"error: {args.rundir}: no cells/, pretrain/, hydra/ or {SUBMISSIONS}/ "
                      "here — is it a run store "
                      "(runs/<experiment_name>)?", markup=False)  # fmt: skip
        return 2
    corrupt: list[str] = []
    rows = status_rows(args.rundir, corrupt.append)
    cells = sum(r["stage"] == "cell" for r in rows)
    title = f"{args.rundir} — {len(rows) - cells} pretraining(s), {cells} cell(s)"
    console.print(title, markup=False, highlight=False, soft_wrap=True)  # the path stays whole
    table = Table()  # at 80 columns only a long name (a missing cell's overrides) wraps
    for column in ("stage", "status", "job"):
        table.add_column(column, no_wrap=True)
    table.add_column("name", overflow="fold")
    for r in rows:
        table.add_row(r["stage"], r["status"], r.get("job", ""), r["cell"])
    console.print(table)
    for line in [*detail_lines(rows), *(f"warning: {c}" for c in corrupt)]:  # unwrapped below
        console.print(line, markup=False, highlight=False, soft_wrap=True)  # paths stay copyable
    counts = Counter(r["status"] for r in rows)
    for stage in ("pretrain", "cell"):
        mine = Counter(r["status"] for r in rows if r["stage"] == stage)
        if mine:
            console.print(f"{stage}: " + ", ".join(f"{mine[s]} {s}" for s in ORDER if mine[s]),
                          markup=False)  # fmt: skip
    return 1 if counts["failed"] or counts["cancelled"] or counts["blocked"] or corrupt else 0


if __name__ == "__main__":
    raise SystemExit(main())
