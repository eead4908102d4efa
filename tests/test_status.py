"""python -m cass_hpc.status: pending / waiting / running / requeued / done / failed / interrupted /
missing, from real files (state.json, a launch's plan record, submitit's pickles)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest
from collect_fixtures import result as result_record
from submitit.core.utils import DelayedSubmission

from cass_hpc import jobstate, local_launcher, store
from cass_hpc.plan import CellStage, Plan, PretrainStage
from cass_hpc.status import detail_lines, main, status_rows


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


def _plan(tmp_path: Path) -> Plan:
    """A local grid's plan: one pretraining, a cell after it and a supervised cell."""
    pre = PretrainStage("pk", tmp_path / "pretrain" / "cass-p", ("seed=0", "stage=pretrain"), False)
    cells = [
        CellStage("ck", tmp_path / "cells" / "cass-c", ("seed=0",), "pk", False),
        CellStage("sk", tmp_path / "cells" / "sup-s", ("method=supervised",), None, False),
    ]
    return Plan(cells=cells, pretrainings={"pk": pre}, store_roots=[tmp_path])  # fmt: skip


def _launched_by(tmp_path: Path, pid: int) -> Path:
    """Record the plan as the local launcher does at launch, with launcher ``pid``."""
    sweep = tmp_path / "hydra" / "2026-01-01_00-00-00"
    local_launcher.record_plan(_plan(tmp_path), sweep)
    (path,) = (tmp_path / jobstate.SUBMISSIONS).glob("*.json")
    store.write_json(path, {**store.read_json(path), "local": {"host": socket.gethostname(),
                                                              "pid": pid}})  # fmt: skip
    return sweep


def _started(sweep: Path, job: int, overrides: list[str]) -> None:
    """A job submitit started for ``overrides`` (its folder and pickle, named by its pid)."""
    folder = sweep / ".submitit" / str(job)
    folder.mkdir(parents=True)
    with open(folder / f"{job}_submitted.pkl", "wb") as handle:
        cloudpickle.dump(DelayedSubmission(print, overrides), handle)


def test_a_running_local_grid_lists_its_unstarted_stages_as_pending_or_waiting(
    tmp_path: Path, capsys
) -> None:
    _launched_by(tmp_path, os.getpid())  # the launcher still runs
    rows = {r["cell"]: r["status"] for r in status_rows(tmp_path)}
    assert rows == {"cass-p": "pending", "cass-c": "waiting", "sup-s": "pending"}
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "pretrain: 1 pending\ncell: 1 waiting, 1 pending" in out
    assert "cass-c:" not in out  # no detail line for a stage that has not started


def test_a_stopped_local_grid_shows_started_stages_interrupted_and_the_rest_missing(
    tmp_path: Path,
) -> None:
    sweep = _launched_by(tmp_path, dead_pid())  # Ctrl-C ended the launcher
    _started(sweep, dead_pid(), ["seed=0", "stage=pretrain"])  # stopped before it reported
    rows = {r["cell"]: r for r in status_rows(tmp_path)}
    assert {n: r["status"] for n, r in rows.items()} == {
        "cass-p": "interrupted", "cass-c": "missing", "sup-s": "missing"}  # fmt: skip
    assert rows["cass-p"]["error"].endswith("rerun the same command to resume")
    assert rows["cass-p"]["log"].endswith("_0_log.out")
    assert "never started" in rows["sup-s"]["error"] and "rerun the grid" in rows["sup-s"]["error"]
    assert main([str(tmp_path)]) == 0  # nothing failed


def test_a_local_job_started_but_not_yet_reporting_is_running_with_its_pid_and_log(
    tmp_path: Path,
) -> None:
    sweep = _launched_by(tmp_path, os.getpid())
    _started(sweep, os.getpid(), ["method=supervised"])  # its process imports torch, say
    row = next(r for r in status_rows(tmp_path) if r["cell"] == "sup-s")
    assert row["status"] == "running" and row["where"] == f"starting, pid {os.getpid()}"
    (line,) = [x for x in detail_lines([row])]
    assert line.startswith(f"running sup-s: starting, pid {os.getpid()}\n  log: ")


def test_a_pretraining_left_with_a_checkpoint_and_no_state_is_interrupted_not_missing(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "pretrain" / "cass-p"  # a single run stopped by an older version
    directory.mkdir(parents=True)
    (directory / "checkpoint.pt").write_bytes(b"")
    cell(tmp_path, "c-interrupted", state="interrupted")
    rows = {r["cell"]: r for r in status_rows(tmp_path)}
    assert rows["cass-p"]["status"] == "interrupted"
    assert "checkpoint.pt kept" in rows["cass-p"]["error"]


def test_detail_lines_say_where_a_stage_runs_and_nothing_for_pending_or_done(
    tmp_path: Path,
) -> None:
    here = {"host": socket.gethostname(), "log": "/logs/x.out", "attempt": 1}
    cell(tmp_path, "a-running", state="running", pid=os.getpid(), **here)
    cell(tmp_path, "b-done", results=True, state="done", **here)
    cell(tmp_path, "c-failed", state="failed", **here)  # died without its error line
    lines = detail_lines(status_rows(tmp_path))
    assert lines == [
        "failed c-failed: (no error recorded)\n  log: /logs/x.out",
        f"running a-running: pid {os.getpid()} on {socket.gethostname()}\n  log: /logs/x.out",
    ]


def test_item7_a_wrong_shaped_launch_record_is_named_corrupt_and_the_rest_is_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cell(tmp_path, "a-done", results=True, state="done", overrides=["seed=0"])
    records = tmp_path / jobstate.SUBMISSIONS
    records.mkdir()
    (records / "1.json").write_text('{"cells": "abc"}')  # was: TypeError
    (records / "2.json").write_text('{"cells": [{"key": "k", "dir": 5}]}')
    (records / "3.json").write_text("[1, 2]")
    assert main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "Traceback" not in out and "done a-done" not in out and "1 done" in out
    shown = "; its stages are shown from their folders only"
    assert [line for line in out.splitlines() if line.startswith("warning:")] == [
        f"warning: {records / '1.json'} is corrupt ('cells' is 'abc'){shown}",
        f"warning: {records / '2.json'} is corrupt (cells[0]: 'dir' is 5){shown}",
        f"warning: {records / '3.json'} is corrupt (top level is a JSON list, expected an "
        f"object){shown}",
    ]


def test_item9_status_shows_a_corrupt_state_json_instead_of_hiding_it(tmp_path: Path) -> None:
    cell(tmp_path, "a-garbled", state="running", pid="abc")  # was: ValueError from int()
    cell(tmp_path, "b-truncated", state="running")
    (tmp_path / "cells" / "b-truncated" / "state.json").write_text('{"state": "runn')
    cell(tmp_path, "c-done", results=True, overrides="seed=0")  # results.json decides: done
    rows = {r["cell"]: r for r in status_rows(tmp_path)}
    assert {name: r["status"] for name, r in rows.items()} == {
        "a-garbled": "failed",
        "b-truncated": "failed",
        "c-done": "done",
    }
    state = tmp_path / "cells" / "a-garbled" / "state.json"
    assert rows["a-garbled"]["error"] == (
        f"{state} is corrupt ('pid' is 'abc'); delete it, then rerun the grid to run the stage "
        "again"
    )
    assert rows["b-truncated"]["error"].startswith(
        f"{tmp_path / 'cells' / 'b-truncated' / 'state.json'} is corrupt (Unterminated string"
    )


def test_item9_the_table_fits_80_columns_with_every_stage_name_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 27 item 9: at 80 columns (a terminal's default) the table does not wrap a stage's
    name or status across lines; the run store's path (any length) is its own line."""
    root = tmp_path / ("a-long-folder-name-" * 4) / "runs" / "radiogalaxy"
    names = [f"{m}-{a}-lf0.1-s{s}-2a3fedb57cc3" for m in ("cass_plus", "supervised", "vicreg")
             for a in ("cnn", "vit") for s in (0, 1)]  # fmt: skip
    for n, name in enumerate(names):
        cell(root, name, state="failed" if n % 3 else "done", results=not n % 3,
             error="ValueError: x", overrides=[f"seed={n}"], job=f"{1234567 + n}_{n}")  # fmt: skip
    monkeypatch.setenv("COLUMNS", "80")
    main([str(root)])
    out = capsys.readouterr().out.splitlines()
    table = [line for line in out if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= 80 for line in table), "\n".join(table)
    for name in names:
        assert any(name in line for line in table), (name, "\n".join(table))
    assert str(root) in out[0]  # the title: the path whole, on its own line
