"""python -m cass_hpc.status: done / running / requeued / failed / missing, from real files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import cloudpickle
from collect_fixtures import result as result_record
from submitit.core.utils import DelayedSubmission

from cass_hpc import jobstate, store
from cass_hpc.status import main, status_rows


def cell(root: Path, name: str, results: bool = False, **state: object) -> None:
    d = root / "cells" / name
    d.mkdir(parents=True)
    if state:
        store.write_json(d / "state.json", state)
    if results:
        store.write_json(d / "results.json", result_record(key=name))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_each_cell_gets_its_status_with_the_error_line_and_log(tmp_path: Path) -> None:
    here = {"host": socket.gethostname(), "log": "/logs/x.out"}
    cell(tmp_path, "a-done", results=True, state="done", overrides=["seed=0"])
    cell(tmp_path, "b-failed", state="failed", error="ShardError: shard corrupt", **here)
    cell(tmp_path, "c-running", state="running", pid=os.getpid(), attempt=1, **here)
    cell(tmp_path, "d-requeued", state="running", pid=os.getpid(), attempt=2, **here)
    cell(tmp_path, "e-killed", state="running", pid=dead_pid(), attempt=1, **here)
    folder = tmp_path / "hydra" / "t" / ".submitit" / "7"
    folder.mkdir(parents=True)
    for n, overrides in enumerate((["seed=0"], ["seed=1"])):
        with open(folder / f"7_{n}_submitted.pkl", "wb") as handle:
            cloudpickle.dump(DelayedSubmission(print, overrides), handle)

    rows = {r["cell"]: r for r in status_rows(tmp_path)}
    assert {name: r["status"] for name, r in rows.items()} == {
        "a-done": "done", "b-failed": "failed", "c-running": "running",
        "d-requeued": "requeued", "e-killed": "interrupted", "seed=1": "missing",
    }  # fmt: skip
    assert rows["b-failed"]["error"] == "ShardError: shard corrupt"
    assert rows["b-failed"]["log"] == "/logs/x.out"
    assert "is gone" in rows["e-killed"]["error"]  # killed or stopped: a rerun resumes it
    assert rows["e-killed"]["error"].endswith("rerun the same command to resume")
    assert main([str(tmp_path)]) == 1  # a failure makes the exit code non-zero


def test_a_clean_grid_exits_zero_and_a_non_store_exits_two(tmp_path: Path) -> None:
    cell(tmp_path, "a", results=True)
    assert main([str(tmp_path)]) == 0
    assert main([str(tmp_path / "nope")]) == 2


def test_a_job_that_found_its_cell_done_under_other_overrides_is_not_missing(
    tmp_path: Path,
) -> None:
    cell(tmp_path, "a-done", results=True, state="done", overrides=["seed=0"])
    jobstate.add_alias(tmp_path / "cells" / "a-done", ["seed=0", "threads=1"])  # the grid's job
    folder = tmp_path / "hydra" / "t" / ".submitit" / "7"
    folder.mkdir(parents=True)
    with open(folder / "7_0_submitted.pkl", "wb") as handle:
        cloudpickle.dump(DelayedSubmission(print, ["seed=0", "threads=1"]), handle)
    assert [r["status"] for r in status_rows(tmp_path)] == ["done"]


def test_a_cell_stopped_by_ctrl_c_is_interrupted_not_failed_or_running(
    tmp_path: Path, capsys
) -> None:
    here = {"host": socket.gethostname(), "pid": dead_pid(), "attempt": 1}
    cell(tmp_path, "a-interrupted", state="interrupted", **here)
    (row,) = status_rows(tmp_path)
    assert row["status"] == "interrupted"
    assert row["error"] == "stopped by Ctrl-C; run the same command to resume"
    assert main([str(tmp_path)]) == 0  # nothing failed: a rerun resumes it
    out = capsys.readouterr().out
    assert "interrupted a-interrupted: stopped by Ctrl-C" in out and "1 interrupted" in out


def test_a_truncated_results_json_is_not_done_for_status_run_and_the_plan_alike(
    tmp_path: Path,
) -> None:
    cell(tmp_path, "a-truncated", state="done", overrides=["seed=0"])
    results = tmp_path / "cells" / "a-truncated" / "results.json"
    results.write_text('{"schema": "cass-hpc-results/1", "key": ')  # killed mid-write by hand
    cell(tmp_path, "b-no-schema", state="done")
    store.write_json(tmp_path / "cells" / "b-no-schema" / "results.json", {"key": "b"})
    rows = {r["cell"]: r for r in status_rows(tmp_path)}
    assert rows["a-truncated"]["status"] == "failed"
    assert rows["a-truncated"]["error"] == jobstate.unusable(results)
    assert "is unusable" in rows["a-truncated"]["error"]
    assert rows["b-no-schema"]["status"] == "failed"
    assert "missing required key(s)" in rows["b-no-schema"]["error"]
    assert not jobstate.is_done(results)  # what run_cell and plan_grid ask before skipping
