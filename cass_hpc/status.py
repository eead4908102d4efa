"""``python -m cass_hpc.status RUNDIR``: which cells of a grid are done, running, requeued,
failed (or cancelled), interrupted (Ctrl-C) or missing, with a failure's last error line and
the log to read.

RUNDIR is a run store (``runs/<experiment_name>``). Cells report their own state
(``cells/*/state.json``, see `jobstate`); a job that died without reporting (SIGKILL,
``scancel``) is found by asking SLURM (``sacct``) or, for a local job, by its pid. Cells that
were submitted (submitit's ``*_submitted.pkl`` under ``hydra/``) but never started are missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cass_hpc import store
from cass_hpc.jobstate import STATE_FILE

ORDER = ("failed", "cancelled", "interrupted", "requeued", "running", "missing", "done")


def _slurm_state(job_id: str) -> str | None:
    """SLURM's view of a job (RUNNING, PENDING, CANCELLED, …), or None without SLURM."""
    if not shutil.which("sacct"):
        return None
    out = subprocess.run(
        ["sacct", "-n", "-X", "-j", job_id, "-o", "State"], capture_output=True, text=True
    ).stdout.split()
    return out[-1].rstrip("+") if out else None


def _alive(state: dict[str, Any]) -> bool | None:
    """Whether the process that wrote ``state`` still runs (None when it cannot be known)."""
    if state.get("slurm_job_id"):
        slurm = _slurm_state(str(state["slurm_job_id"]))
        return None if slurm is None else slurm in ("RUNNING", "PENDING", "REQUEUED", "RESIZING")
    if state.get("host") == socket.gethostname() and state.get("pid"):
        return Path(f"/proc/{state['pid']}").exists() if os.path.isdir("/proc") else None
    return None


def classify(cell_dir: Path) -> dict[str, Any]:
    """One row of the status table for a cell directory."""
    row: dict[str, Any] = {"cell": cell_dir.name, "error": "", "log": ""}
    state = store.read_json(cell_dir / STATE_FILE) if (cell_dir / STATE_FILE).exists() else {}
    row["log"] = state.get("log") or ""
    row["overrides"] = tuple(state.get("overrides") or ())
    row["aliases"] = [tuple(a) for a in state.get("aliases", [])]  # other jobs that found it done
    if (cell_dir / "results.json").exists():
        return {**row, "status": "done"}
    status = state.get("state", "missing")
    if status == "running":
        alive = _alive(state)
        if alive is False:
            slurm = state.get("slurm_job_id") and _slurm_state(str(state["slurm_job_id"]))
            status = "cancelled" if slurm == "CANCELLED" else "failed"
            row["error"] = (
                f"job gone without a result (SLURM: {slurm})"
                if slurm
                else (f"process {state.get('pid')} is gone (killed?); rerun the grid to resume")
            )
        elif state.get("attempt", 1) > 1:
            status = "requeued"
    if status == "failed" and not row["error"]:
        row["error"] = state.get("error", "")
    if status == "interrupted":  # Ctrl-C on a run started by hand
        row["error"] = "stopped by Ctrl-C; run the same command to resume"
    return {**row, "status": status}


def submitted_overrides(rundir: Path) -> list[tuple[str, ...]]:
    """The overrides of every job submitit was handed under ``rundir/hydra``."""
    import cloudpickle

    found = []
    for path in sorted(rundir.glob("hydra/*/.submitit/**/*_submitted.pkl")):
        try:
            with open(path, "rb") as handle:
                found.append(tuple(cloudpickle.load(handle).args[0]))
        except Exception:  # noqa: BLE001 - a pickle we cannot read names no cell
            continue
    return found


def status_rows(rundir: Path) -> list[dict[str, Any]]:
    rows = [classify(d) for d in sorted((rundir / "cells").glob("*")) if d.is_dir()]
    started = {r["overrides"] for r in rows} | {a for r in rows for a in r["aliases"]}
    for overrides in dict.fromkeys(submitted_overrides(rundir)):
        if overrides not in started:
            swept = " ".join(
                o for o in overrides if not o.startswith(("runs_dir=", "dataset.path="))
            )
            rows.append({"cell": swept, "status": "missing", "error": "", "log": ""})
    return sorted(rows, key=lambda r: (ORDER.index(r["status"]), r["cell"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cass_hpc.status",
        description="Cells of a grid (a run store, e.g. runs/demo): done, running, requeued, "
        "failed/cancelled (with the last error line and the log path, listed below the table), "
        "interrupted (Ctrl-C; rerun to resume) or missing (submitted, no job has started it). "
        "Exit code 1 if any cell failed.",
    )
    parser.add_argument("rundir", type=Path, help="run store: runs/<experiment_name>")
    args = parser.parse_args(argv)
    console = Console()
    if not (args.rundir / "cells").is_dir() and not (args.rundir / "hydra").is_dir():
        console.print(f"error: {args.rundir}: no cells/ or hydra/ here — is it a run store "
                      "(runs/<experiment_name>)?", markup=False)  # fmt: skip
        return 2
    rows = status_rows(args.rundir)
    table = Table(title=f"{args.rundir} — {len(rows)} cell(s)", title_justify="left")
    for column in ("status", "cell"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["status"], r["cell"])
    console.print(table)
    for r in rows:  # errors and logs unwrapped below the table: long paths stay copyable
        if r["status"] != "done" and (r["error"] or r["log"]):
            console.print(f"{r['status']} {r['cell']}: {r['error'] or '(no error recorded)'}"
                          + (f"\n  log: {r['log']}" if r["log"] else ""),
                          markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    counts = Counter(r["status"] for r in rows)
    console.print(", ".join(f"{counts[s]} {s}" for s in ORDER if counts[s]), markup=False)
    return 1 if counts["failed"] or counts["cancelled"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
