"""``python -m cass_hpc.status RUNDIR``: every stage of a grid — its pretrainings and its
cells — pending, waiting (on its pretraining), running, requeued, done, failed (or cancelled,
interrupted) or blocked (its pretraining failed), with a failure's last error line and its log.

RUNDIR is a run store (``runs/<experiment_name>``). Stages report their own state
(``state.json`` in ``cells/*`` and ``pretrain/*``, see `jobstate`); a job that has not started
or died without reporting (SIGKILL, ``scancel``) is found by asking SLURM about the job ids the
launcher recorded (``submissions/*.json``) or, for a local job, by its pid. Local jobs submitted
but never started (submitit's ``*_submitted.pkl`` under ``hydra/``) are missing.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cass_hpc import store
from cass_hpc.jobstate import STATE_FILE, submitted, unusable
from cass_hpc.slurm_jobs import JobInfo, job_info

ORDER = ("failed", "cancelled", "interrupted", "blocked", "requeued", "running", "waiting",
         "pending", "missing", "done")  # fmt: skip
RECORDS = {"pretrain": "pretrain.json", "cell": "results.json"}


def _alive(state: dict[str, Any], slurm: dict[str, JobInfo]) -> bool | None:
    """Whether the process that wrote ``state`` still runs (None when it cannot be known)."""
    if job := state.get("slurm_job_id"):
        info = slurm.get(str(job))
        return None if info is None else info.live
    if state.get("host") == socket.gethostname() and state.get("pid"):
        return Path(f"/proc/{state['pid']}").exists() if os.path.isdir("/proc") else None
    return None


def classify(
    directory: Path, stage: str = "cell", slurm: dict[str, JobInfo] | None = None,
    job: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One row of the status table for a stage's directory (``job``: its submitted job id)."""
    slurm = slurm or {}
    row: dict[str, Any] = {"stage": stage, "cell": directory.name, "error": "", "log": "",
                           "job": job or ""}  # fmt: skip
    path = directory / STATE_FILE
    state = (store.read_record(path) or {}) if path.exists() else {}
    row["log"] = state.get("log") or ""
    row["overrides"] = tuple(state.get("overrides") or ())
    row["aliases"] = [tuple(a) for a in state.get("aliases", [])]  # other jobs that found it done
    record = directory / RECORDS[stage]
    if why := unusable(record):  # the one notion of done (jobstate), as run and collect see it
        return {**row, "status": "failed", "error": why}
    if record.exists():
        return {**row, "status": "done"}
    status = state.get("state")
    info = slurm.get(job or str(state.get("slurm_job_id") or ""))
    if status is None:  # the job never reported: SLURM's word, if it was submitted there
        if info is None:
            return {**row, "status": "missing" if job is None else "pending"}
        if info.state == "PENDING":  # a dependency not yet met, or never to be met
            waiting = {"Dependency": "waiting", "DependencyNeverSatisfied": "blocked"}
            return {**row, "status": waiting.get(info.reason, "pending")}
        if info.live:
            return {**row, "status": "running"}
        status = "cancelled" if info.state == "CANCELLED" else "failed"
        return {**row, "status": status, "error": f"job ended {info.state} without a result"}
    if status == "running":
        alive = _alive(state, slurm)
        if alive is False:
            slurm_state = info.state if info else None
            status = "cancelled" if slurm_state == "CANCELLED" else "failed"
            row["error"] = (
                f"job gone without a result (SLURM: {slurm_state})"
                if slurm_state
                else f"process {state.get('pid')} is gone (killed?); rerun the grid to resume"
            )
        elif state.get("attempt", 1) > 1:
            status = "requeued"
    if status in ("failed", "interrupted", "blocked") and not row["error"]:
        row["error"] = state.get("error", "")
    if status == "interrupted":  # Ctrl-C on a run started by hand
        row["error"] = "stopped by Ctrl-C; run the same command to resume"
    return {**row, "status": status}


def submissions(rundir: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """Pretrainings and cells by directory name, as the launcher recorded them (newest wins)."""
    pretrainings, cells = submitted(rundir)
    return _by_name(pretrainings), _by_name(cells)


def _by_name(items: list[dict]) -> dict[str, dict]:
    return {Path(item["dir"]).name: item for item in items}


def submitted_overrides(rundir: Path) -> list[tuple[str, ...]]:
    """The overrides of every cell job submitit was handed locally under ``rundir/hydra``."""
    import cloudpickle

    found = []
    for path in sorted(rundir.glob("hydra/*/.submitit/**/*_submitted.pkl")):
        try:
            with open(path, "rb") as handle:
                overrides = tuple(cloudpickle.load(handle).args[0])
        except Exception:  # noqa: BLE001 - a pickle we cannot read names no cell
            continue
        if all("=" in o for o in overrides) and "stage=pretrain" not in overrides:
            found.append(overrides)  # a cell (not a pretraining stage, not the collect job)
    return found


def status_rows(rundir: Path) -> list[dict[str, Any]]:
    pre_jobs, cell_jobs = submissions(rundir)
    slurm = job_info([j["job_id"] for j in (*pre_jobs.values(), *cell_jobs.values())])
    pre_dirs = {d.name: d for d in sorted((rundir / "pretrain").glob("*")) if d.is_dir()}
    pre_dirs.update({n: Path(j["dir"]) for n, j in pre_jobs.items() if n not in pre_dirs})
    pre_rows = {n: classify(d, "pretrain", slurm, pre_jobs.get(n, {}).get("job_id"))
                for n, d in pre_dirs.items()}  # fmt: skip
    cell_dirs = {d.name: d for d in sorted((rundir / "cells").glob("*")) if d.is_dir()}
    cell_dirs.update({n: Path(j["dir"]) for n, j in cell_jobs.items() if n not in cell_dirs})
    rows = list(pre_rows.values())
    by_key = {j["key"]: n for n, j in pre_jobs.items()}
    for name, directory in cell_dirs.items():
        job = cell_jobs.get(name, {})
        row = classify(directory, "cell", slurm, job.get("job_id"))
        row["overrides"] = row["overrides"] or tuple(job.get("overrides") or ())
        parent = pre_rows.get(by_key.get(job.get("pretrain") or "", ""))
        parent_failed = parent and parent["status"] in ("failed", "cancelled", "interrupted")
        if parent_failed and row["status"] in ("waiting", "pending", "blocked", "cancelled"):
            why = f"blocked by pretraining {parent['cell']}: {parent['error']}"
            row = {**row, "status": "blocked", "error": why}
        rows.append(row)
    started = {r["overrides"] for r in rows} | {a for r in rows for a in r["aliases"]}
    for overrides in dict.fromkeys(submitted_overrides(rundir)):
        if overrides not in started:
            swept = " ".join(
                o for o in overrides if not o.startswith(("runs_dir=", "dataset.path="))
            )
            rows.append({"stage": "cell", "cell": swept, "status": "missing", "error": "",
                         "log": ""})  # fmt: skip
    return sorted(rows, key=lambda r: (r["stage"] != "pretrain", ORDER.index(r["status"]),
                                       r["cell"]))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cass_hpc.status",
        description="Stages of a grid (a run store, e.g. runs/demo): each pretraining and cell "
        "pending, waiting (on its pretraining), running, requeued, done, failed/cancelled/"
        "interrupted or blocked (by a failed pretraining), with the last error line and the log "
        "path below the table; missing: submitted, never started. Exit code 1 if any failed.",
    )
    parser.add_argument("rundir", type=Path, help="run store: runs/<experiment_name>")
    args = parser.parse_args(argv)
    console = Console()
    if not (args.rundir / "cells").is_dir() and not (args.rundir / "hydra").is_dir():
        console.print(f"error: {args.rundir}: no cells/ or hydra/ here — is it a run store "
                      "(runs/<experiment_name>)?", markup=False)  # fmt: skip
        return 2
    rows = status_rows(args.rundir)
    cells = sum(r["stage"] == "cell" for r in rows)
    table = Table(title=f"{args.rundir} — {len(rows) - cells} pretraining(s), {cells} cell(s)",
                  title_justify="left")  # fmt: skip
    for column in ("stage", "status", "job", "name"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["stage"], r["status"], r.get("job", ""), r["cell"])
    console.print(table)
    for r in rows:  # errors and logs unwrapped below the table: long paths stay copyable
        if r["status"] != "done" and (r["error"] or r["log"]):
            console.print(f"{r['status']} {r['cell']}: {r['error'] or '(no error recorded)'}"
                          + (f"\n  log: {r['log']}" if r["log"] else ""),
                          markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    counts = Counter(r["status"] for r in rows)
    for stage in ("pretrain", "cell"):
        mine = Counter(r["status"] for r in rows if r["stage"] == stage)
        if mine:
            console.print(f"{stage}: " + ", ".join(f"{mine[s]} {s}" for s in ORDER if mine[s]),
                          markup=False)  # fmt: skip
    return 1 if counts["failed"] or counts["cancelled"] or counts["blocked"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
