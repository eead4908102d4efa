"""Run store: stable keys, atomic writes, the pretraining lock."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from cass_hpc import store


def test_stable_key_ignores_dict_order_and_sees_values() -> None:
    assert store.stable_key({"a": 1, "b": [1, 2]}) == store.stable_key({"b": [1, 2], "a": 1})
    assert store.stable_key({"a": 1}) != store.stable_key({"a": 2})


def test_failed_atomic_write_leaves_neither_file_nor_temp(tmp_path: Path) -> None:
    target = tmp_path / "results.json"

    def explode(tmp: Path) -> None:
        tmp.write_text("{partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        store.atomic_write(target, explode)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    store.write_json(target, {"x": 1})
    store.write_json(target, {"x": 2})
    assert store.read_json(target) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def _hold_lock(directory: str, marker: str) -> None:
    with store.exclusive(Path(directory)):
        Path(marker).write_text("held")
        time.sleep(1.0)


def test_exclusive_lock_makes_a_second_holder_wait(tmp_path: Path) -> None:
    marker = tmp_path / "held"
    proc = mp.get_context("fork").Process(
        target=_hold_lock, args=(str(tmp_path / "d"), str(marker))
    )
    proc.start()
    while not marker.exists():
        time.sleep(0.01)
    t0 = time.perf_counter()
    with store.exclusive(tmp_path / "d"):
        waited = time.perf_counter() - t0
    proc.join()
    assert waited > 0.5


def test_a_filesystem_without_flock_gets_one_error_naming_the_lock_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import fcntl

    def no_locks(handle: object, operation: int) -> None:  # Lustre mounted without -o flock
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(ValueError, match=r"\.lock: this filesystem does not support file locks"):
        with store.exclusive(tmp_path / "pretrain" / "x"):
            pass


def test_temporaries_of_an_interrupted_save_are_removed_and_nothing_else(tmp_path: Path) -> None:
    keep = [tmp_path / "checkpoint.pt", tmp_path / ".other.pt.abc.tmp", tmp_path / "x.tmp"]
    stale = [tmp_path / ".checkpoint.pt.k2j3.tmp", tmp_path / ".checkpoint.pt.zz.tmp"]
    for path in keep + stale:
        path.write_bytes(b"x")
    assert store.remove_temporaries(tmp_path / "checkpoint.pt") == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


def test_a_folder_holding_only_what_hydra_wrote_is_removed_with_its_empty_parents(
    tmp_path: Path,
) -> None:
    run = tmp_path / "runs" / "exp" / "hydra" / "2026-11-30_10-00-00"
    (run / ".hydra").mkdir(parents=True)
    (run / "run.log").write_text("error: ...\n")
    assert store.remove_unused(run, {".hydra", "run.log"})
    assert not (tmp_path / "runs" / "exp").exists() and (tmp_path / "runs").is_dir()
    kept = tmp_path / "kept" / "hydra" / "sweep"
    kept.mkdir(parents=True)
    (kept / "multirun.yaml").write_text("")
    (kept / "0").mkdir()  # a job's folder: the sweep ran something
    assert not store.remove_unused(kept, {"multirun.yaml"}) and (kept / "0").is_dir()


FULL_DISK_SCRIPT = r"""
import json, sys
from pathlib import Path
import torch
from cass_hpc import jobstate, store
from cass_hpc.stage import ResumableStage

cell = Path(sys.argv[1]) / "cells" / "cass-cnn-lf0.1-s0-abc"
stage = ResumableStage(cell / "checkpoint.pt", None, "pretraining")
out = {}
try:
    with jobstate.reporting(cell, ["method=cass"]):
        stage.save(1, {"w": torch.ones(1000)})  # the last good checkpoint: 4 kB
        with open(cell.parent / "filler.bin", "wb") as handle:  # the disk fills up
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass
        stage.save(2, {"w": torch.zeros(2**18)})  # 1 MB: does not fit
except store.NoSpaceError as err:
    out["error"] = str(err)
    out["chained"] = err.__cause__ is not None or not err.__suppress_context__
out["state"] = json.loads((cell / "state.json").read_text())
out["kept"] = torch.load(cell / "checkpoint.pt", weights_only=True)["w"].sum().item()
out["files"] = sorted(p.name for p in cell.iterdir())
print(json.dumps(out))
"""


def test_item5_a_full_disk_is_one_line_the_stage_failed_and_the_last_checkpoint_kept(
    tmp_path: Path,
) -> None:
    """Issue 27 item 5: ENOSPC during a checkpoint write names the filesystem, the file and the
    space it needs in one line (no chained tracebacks), the stage's state.json says failed with
    that line even though the disk is full, and the last good checkpoint is intact. A real full
    disk: a 1 MB tmpfs mounted in a user namespace (no root needed)."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {disk}"],
        capture_output=True, text=True,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"user namespaces cannot mount tmpfs here: {probe.stderr.strip()}")
    script = tmp_path / "full.py"
    script.write_text(FULL_DISK_SCRIPT)
    shell = (
        f"mount -t tmpfs -o size=1m tmpfs {disk} && {sys.executable} {script} {disk} && "
        f"{sys.executable} -m cass_hpc.status {disk}; echo status-exit=$?"
    )
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}  # this checkout's code, as `python -m` gets
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", shell], capture_output=True, text=True, cwd=repo, env=env
    )
    lines = done.stdout.strip().splitlines()
    assert lines and lines[0].startswith("{"), done.stdout + done.stderr
    out = json.loads(lines[0])
    assert out["error"].startswith(f"no space left on {disk} ("), out
    assert (
        f"writing {disk}/cells/cass-cnn-lf0.1-s0-abc/checkpoint.pt (needs ~1.0 MB)"
        in (out["error"])
    )
    assert "\n" not in out["error"] and not out["chained"]
    assert out["state"]["state"] == "failed"
    assert out["state"]["error"] == f"NoSpaceError: {out['error']}"
    assert out["kept"] == 1000.0  # epoch 1's checkpoint, untouched
    assert sorted(set(out["files"]) - {".lock"}) == ["checkpoint.pt", "state.json"]  # no .tmp
    status = "\n".join(lines[1:])
    assert "no space left on" in status and "killed" not in status.lower(), status
