"""A grid through a REAL SLURM cluster (slurmctld, slurmd, munge, slurmdbd + MariaDB) brought up
on this machine by slurm/cluster.sh, and torn down leaving no daemon behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_module

CLUSTER = REPO / "slurm" / "cluster.sh"
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")


def _can_run_slurm() -> str | None:
    if os.geteuid() != 0 and shutil.which("slurmctld") is None:
        return "needs root (to apt-get install SLURM and start its daemons)"
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if reason := _can_run_slurm():
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm-state")
    up = subprocess.run(
        [str(CLUSTER), "up", str(state)], capture_output=True, text=True, timeout=600
    )
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    env = {**os.environ, "SLURM_CONF": str(state / "etc" / "slurm.conf")}
    try:
        yield env
    finally:
        pids = {d: (state / "run" / f"{d}.pid").read_text().strip() for d in DAEMONS
                if (state / "run" / f"{d}.pid").exists()}  # fmt: skip
        down = subprocess.run([str(CLUSTER), "down", str(state)], capture_output=True, text=True)
        assert down.returncode == 0, down.stderr
        alive = [d for d, pid in pids.items() if Path(f"/proc/{pid}").exists()]
        assert not alive, f"daemons left running after down: {alive}"


def test_a_grid_runs_through_real_slurm_as_a_job_array(
    slurm_env: dict[str, str], tiny_dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    proc = run_module(
        "cass_hpc.run", "-m", "experiment=demo", "hydra/launcher=testcluster",
        f"runs_dir={runs}", f"dataset.path={tiny_dataset}", "image_size=32", "seed=0",
        "label_fraction=1.0", "pretrain.epochs=1", "pretrain.batch_size=8",
        "finetune.max_epochs=1", "finetune.batch_size=8", env=slurm_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in runs.rglob("results.json")]
    assert {(r["method"], r["arm"]) for r in results} == {
        ("cass", "cnn"),
        ("cass", "vit"),
        ("supervised", "cnn"),
        ("supervised", "vit"),
    }
    # the cells really were SLURM jobs: accounting lists them as completed array tasks
    sacct = subprocess.run(
        ["sacct", "-n", "-X", "-o", "JobID,State"], capture_output=True, text=True, env=slurm_env
    )
    tasks = [line.split() for line in sacct.stdout.splitlines() if "_" in line.split()[0]]
    assert len(tasks) >= 4 and all(state == "COMPLETED" for _, state in tasks)

    # re-running the finished grid trains nothing: every cell is found done and left as it was
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("results.json")}
    again = run_module(*proc.args[2:], env=slurm_env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("results.json")} == before
    logs = "".join(p.read_text() for p in runs.rglob("*_log.out"))
    assert logs.count("already done") >= 4 and "pretrain cass epoch" in logs


def test_a_preempted_cell_is_requeued_and_resumes_to_identical_metrics(
    slurm_env: dict[str, str], tiny_dataset: Path, tmp_path: Path
) -> None:
    cell = [f"dataset.path={tiny_dataset}", "image_size=32", "method=cass", "arm=vit",
            "label_fraction=1.0", "seed=0", "threads=1", "pretrain.epochs=6",
            "pretrain.batch_size=8", "finetune.max_epochs=2", "finetune.batch_size=8"]  # fmt: skip
    ref = run_module(  # the same cell, uninterrupted, run locally
        "cass_hpc.run", "experiment=demo", "hydra.mode=RUN", f"runs_dir={tmp_path / 'ref'}", *cell
    )
    assert ref.returncode == 0, ref.stderr[-3000:]
    (ref_path,) = (tmp_path / "ref").rglob("results.json")
    reference = json.loads(ref_path.read_text())

    runs = tmp_path / "slurm"
    cmd = [sys.executable, "-m", "cass_hpc.run", "-m", "experiment=demo",
           "hydra/launcher=testcluster", f"runs_dir={runs}", *cell]  # fmt: skip
    launcher = subprocess.Popen(cmd, cwd=REPO, env=slurm_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ckpts = list(runs.rglob("pretrain/*/checkpoint.pt"))
        if ckpts and torch.load(ckpts[0], weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.1)
    else:
        pytest.fail("no pretraining checkpoint appeared")
    job = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                         env=slurm_env).stdout.split()  # fmt: skip
    assert len(job) == 1, job
    subprocess.run(["scancel", "--signal=USR2", job[0]], check=True, env=slurm_env)
    out, _ = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, out[-3000:]

    (path,) = runs.rglob("results.json")
    resumed = json.loads(path.read_text())
    assert resumed["metrics"] == reference["metrics"]
    assert resumed["pretrain"]["loss"] == reference["pretrain"]["loss"]
    logs = "".join(p.read_text() for p in runs.rglob("*_log.*"))
    assert "SIGUSR2: saving at the next step boundary" in logs  # the loop saved, then requeued
    sacct = ["sacct", "-D", "-n", "-X", "-j", job[0].split("_")[0], "-o", "State"]
    history = subprocess.run(sacct, capture_output=True, text=True, env=slurm_env).stdout.split()
    assert "REQUEUED" in history and history[-1] == "COMPLETED", history


def test_status_reports_a_cancelled_cell_while_the_others_finish(
    slurm_env: dict[str, str], tiny_dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "cass_hpc.run", "-m", "experiment=demo",
           "hydra/launcher=testcluster", f"runs_dir={runs}", f"dataset.path={tiny_dataset}",
           "image_size=32", "method=supervised", "label_fraction=1.0", "seed=0", "threads=1",
           "finetune.max_epochs=40", "finetune.patience=40", "finetune.batch_size=8"]  # fmt: skip
    launcher = subprocess.Popen(cmd, cwd=REPO, env=slurm_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(runs.rglob("state.json"))) < 2:
        time.sleep(0.2)
    jobs = sorted(subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                                 env=slurm_env).stdout.split())  # fmt: skip
    assert len(jobs) == 2, jobs
    subprocess.run(["scancel", jobs[0]], check=True, env=slurm_env)
    launcher.communicate(timeout=600)  # the launcher returns once both jobs have ended
    while time.monotonic() < deadline and not list(runs.rglob("results.json")):
        time.sleep(0.5)  # the other cell goes on to finish

    status = run_module("cass_hpc.status", str(runs / "demo"), env=slurm_env)
    assert status.returncode == 1, status.stdout
    assert "1 cancelled" in status.stdout and "1 done" in status.stdout, status.stdout


def test_a_second_cluster_refuses_ports_held_by_the_first(
    slurm_env: dict[str, str], tmp_path: Path
) -> None:
    other = tmp_path / "other-state"
    up = subprocess.run([str(CLUSTER), "up", str(other)], capture_output=True, text=True)
    assert up.returncode == 1
    assert "port 3306 (for mariadbd) is already in use" in up.stderr, up.stderr
    assert not list(other.glob("run/*.pid"))  # nothing of its own was started


@pytest.mark.slow  # two real time limits: ~3–4 min
def test_a_cell_at_its_time_limit_resumes_from_its_step_until_out_of_requeues(
    slurm_env: dict[str, str], tiny_dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    proc = run_module(
        "cass_hpc.run", "-m", "experiment=demo", "hydra/launcher=testcluster", f"runs_dir={runs}",
        f"dataset.path={tiny_dataset}", "image_size=32", "method=cass", "arm=vit",
        "label_fraction=1.0", "seed=0", "threads=1", "pretrain.epochs=100000",
        "pretrain.batch_size=8", "+model.vit.kwargs.depth=1",
        # USR2 30–90 s into each attempt (SLURM signals up to 60 s early); one requeue allowed
        "hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=30",
        "hydra.launcher.max_num_timeout=1",
        env=slurm_env,
    )  # fmt: skip
    assert proc.returncode != 0  # the second time limit ends the cell: no requeue left
    logs = "".join(p.read_text() for p in sorted(runs.rglob("*_log.*")))  # both attempts
    assert logs.count("SIGUSR2: saving at the next step boundary") >= 2, logs[-3000:]
    assert "resuming pretraining from" in logs and "this job is timed-out" in logs
    job = next(runs.rglob("*_log.out")).name.split("_log")[0].rsplit("_", 1)[0]
    sacct = ["sacct", "-D", "-n", "-X", "-j", job.split("_")[0], "-o", "State"]
    history = subprocess.run(sacct, capture_output=True, text=True, env=slurm_env).stdout.split()
    assert "REQUEUED" in history, history
    wide = {**slurm_env, "COLUMNS": "300"}  # the error on one line
    status = run_module("cass_hpc.status", str(runs / "demo"), env=wide)
    assert status.returncode == 1 and "1 failed" in status.stdout, status.stdout
    assert "timed-out too many times" in status.stdout, status.stdout
