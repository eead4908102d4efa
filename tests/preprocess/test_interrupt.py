"""Interrupting a real ``python -m preprocess`` mid-pack, with worker processes decoding: Ctrl-C
(SIGINT to the whole process group) and SIGKILL leave no output a later run would take for
complete, and no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cass_hpc.data.shards import ShardError, read_manifest
from preprocess.__main__ import main

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
# 8,000 images: tens of seconds of work, killed within the first second or two
SLOW_PACK = ["--per-class", "2000", "--image-size", "64", "--shard-size", "16", "--workers", "2"]


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name))


def _descendants(pid: int) -> set[int]:
    """Live (non-zombie) processes below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.add(pid)
        except (OSError, IndexError):
            pass
    return alive


def _start_pack_and_wait_for_workers(out: Path) -> tuple[subprocess.Popen, set[int]]:
    """Start a slow pack; return once a shard is being written and its workers run."""
    process = subprocess.Popen(
        [sys.executable, "-m", "preprocess", "synthetic", "shapes", str(out), *SLOW_PACK],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a job started from a shell
    )
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the pack never started writing with its workers"
        helpers = _descendants(process.pid)
        if len(helpers) >= 3 and list(out.parent.glob(f"{out.name}.partial-*/*.h5")):
            return process, helpers  # forkserver + 2 workers (+ resource tracker)
        time.sleep(0.02)


def _wait_until_gone(pids: set[int], seconds: float = 10) -> set[int]:
    deadline = time.monotonic() + seconds
    while (alive := _alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def test_ctrl_c_mid_pack_exits_130_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "shapes"
    process, helpers = _start_pack_and_wait_for_workers(out)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    try:
        returncode = process.wait(timeout=60)
        stderr = process.stderr.read().decode()
    finally:
        process.stderr.close()
    assert returncode == 130, stderr
    assert stderr == f"interrupted: nothing was written to {out}\n", stderr
    assert _leftovers(out) == []  # no OUT, no staging dir
    assert _wait_until_gone(helpers) == set()


def test_sigkilled_pack_leaves_no_dataset_no_workers_and_a_rerun_cleans_up(
    tmp_path: Path,
) -> None:
    out = tmp_path / "shapes"
    process, helpers = _start_pack_and_wait_for_workers(out)
    process.kill()
    process.wait()
    process.stderr.close()
    assert _leftovers(out) == [f"shapes.partial-{process.pid}"]  # never taken for a dataset
    with pytest.raises(ShardError, match="no manifest.json — not a packed dataset"):
        read_manifest(out)
    assert _wait_until_gone(helpers) == set()  # the workers noticed and exited

    argv = ["synthetic", "shapes", str(out), "--per-class", "3", "--image-size", "8"]
    assert main(argv) == 0
    assert _leftovers(out) == ["shapes"]  # the stale staging dir is gone
    assert sum(read_manifest(out).splits.values()) == 12
