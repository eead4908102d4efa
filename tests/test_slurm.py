"""A grid through a REAL SLURM cluster (slurmctld, slurmd, munge, slurmdbd + MariaDB) brought up
on this machine by slurm/cluster.sh, and torn down leaving no daemon behind."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY_BUDGET, run_module

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


TINY = [
    *TINY_BUDGET,
    "+model.vit.kwargs.depth=1",
    "threads=1",
]


def copy_checkout(dest: Path) -> str:
    """This working tree as a git checkout of its own (a user's clone); returns its commit."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    for name in files:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "submitted code"]):
        subprocess.run([*git, *cmd], cwd=dest, check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=dest, capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip


def squeue(env: dict[str, str]) -> list[list[str]]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%j|%T|%r"], capture_output=True,
                         text=True, env=env).stdout  # fmt: skip
    return [line.split("|") for line in out.splitlines()]


def sacct_times(env: dict[str, str]) -> dict[str, tuple[str, str, str]]:
    """Job id -> (state, start, end) of every job the cluster ran."""
    cmd = ["sacct", "-n", "-X", "-P", "-S", "2000-01-01", "-o", "JobID,State,Start,End"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env).stdout
    return {j: (st, a, b) for j, st, a, b in (line.split("|") for line in out.splitlines())}


def wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not path.exists():
        time.sleep(1)
    assert path.exists(), f"{path} did not appear within {seconds} s"


def elapsed_s(start: str, end: str) -> float:
    parse = dt.datetime.fromisoformat
    return (parse(end) - parse(start)).total_seconds()


@pytest.mark.parametrize(
    ("fractions", "seeds", "arms"),
    [
        pytest.param("1.0", "0", "cnn", id="3-cells"),
        pytest.param("0.5,1.0", "0,1", "cnn,vit", marks=pytest.mark.slow, id="24-cells"),
    ],
)
def test_a_grid_is_a_dag_of_slurm_jobs_submitted_in_seconds_running_the_submitted_code(
    slurm_env: dict[str, str], tiny_dataset: Path, tmp_path: Path, fractions: str, seeds: str,
    arms: str,
) -> None:  # fmt: skip
    checkout = tmp_path / "checkout"
    commit = copy_checkout(checkout)
    runs = tmp_path / "runs"
    grid = ["cass_hpc.run", "-m", "experiment=paper", "hydra/launcher=testcluster",
            f"runs_dir={runs}", f"dataset.path={tiny_dataset}", f"label_fraction={fractions}",
            f"seed={seeds}", f"arm={arms}", *TINY]  # fmt: skip
    n_seeds, n_arms = len(seeds.split(",")), len(arms.split(","))
    n_cells = 3 * len(fractions.split(",")) * n_seeds * n_arms  # DINO, CASS, supervised
    n_pretrain = n_seeds * (1 + n_arms)  # per seed: CASS once for both arms, DINO per arm
    started = time.monotonic()
    online = {**slurm_env, "HF_HUB_OFFLINE": "0"}  # the jobs are offline all the same
    proc = run_module(*grid, cwd=checkout, env=online)
    submit_s = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert submit_s < 30, f"submission took {submit_s:.1f} s"
    assert "python -m cass_hpc.status" in proc.stdout  # what to do next
    # right after submission the cells of each pretraining are queued behind it, holding nothing
    queued = squeue(slurm_env)
    cells = [j for j in queued if j[1] == "cass-cell"]
    assert {j[1] for j in queued} == {"cass-pretrain", "cass-cell", "cass-collect"}, queued
    assert len(cells) == n_cells, cells
    assert sum(j[3] == "Dependency" for j in cells) == n_cells * 2 // 3, cells  # CASS and DINO
    # the same grid submitted again while it is queued: nothing is submitted twice
    twice = run_module(*grid, cwd=REPO, env=slurm_env)
    assert twice.returncode == 0, twice.stderr[-3000:]
    said = re.search(r"nothing to submit: of (\d+) cell\(s\) of this grid (\d+) are done and "
                     r"(\d+) queued or running by an earlier submission", twice.stdout)  # fmt: skip
    assert said and int(said[1]) == int(said[2]) + int(said[3]) == n_cells, twice.stdout
    assert len(squeue(slurm_env)) <= len(queued)
    # the checkout changes while the grid is queued: the jobs run the code submitted
    (checkout / "cass_hpc" / "finetune.py").write_text("raise RuntimeError('edited checkout')\n")

    store_root = runs / "paper"
    wait_for(store_root / "summary" / "results.md", 900)  # written by the collect job
    results = [json.loads(p.read_text()) for p in store_root.rglob("results.json")]
    assert len(results) == n_cells
    assert {(r["code"]["commit"], r["code"]["dirty"]) for r in results} == {(commit, False)}
    assert {r["environment"]["HF_HUB_OFFLINE"] for r in results} == {"1"}, "a job was online"
    record = json.loads(next((store_root / "submissions").glob("*.json")).read_text())
    times = sacct_times(slurm_env)
    ends = {p["key"]: times[p["job_id"]][2] for p in record["pretrainings"]}
    assert len(ends) == n_pretrain
    for r in results:  # pretraining time is recorded alike for DINO and CASS (Table 1)
        if r["method"] != "supervised":
            timing = {"wall_s", "images_per_s", "peak_mem_mb", "epoch_s", "images"}
            assert timing <= set(r["pretrain"]) and r["pretrain"]["wall_s"] > 0
    for cell in record["cells"]:  # no cell started before its own pretraining had ended
        state, start, _ = times[cell["job_id"]]
        assert state == "COMPLETED"
        if cell["pretrain"]:
            assert start >= ends[cell["pretrain"]], (cell, start, ends[cell["pretrain"]])
    pretrain_s = {r["pretrain"]["key"]: r["pretrain"]["wall_s"] for r in results if r["pretrain"]}
    compute = {"pretrain": sum(pretrain_s.values()),
               "cell": sum(r["finetune"]["wall_s"] for r in results)}  # fmt: skip
    for stage, jobs in (("pretrain", record["pretrainings"]), ("cell", record["cells"])):
        held = sum(elapsed_s(*times[j["job_id"]][1:]) for j in jobs)
        print(
            f"{stage}: {len(jobs)} jobs, Σ elapsed {held:.0f} s, Σ compute {compute[stage]:.0f} s"
        )
    status = run_module("cass_hpc.status", str(store_root), env=slurm_env)
    assert status.returncode == 0, status.stdout
    assert f"pretrain: {n_pretrain} done" in status.stdout, status.stdout
    assert f"cell: {n_cells} done" in status.stdout, status.stdout

    queued_before = {j[0] for j in squeue(slurm_env)}  # the collect job may still run
    again = run_module(*grid, cwd=REPO, env=slurm_env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (
        f"nothing to submit: of {n_cells} cell(s) of this grid {n_cells} are done" in again.stdout
    )
    assert {j[0] for j in squeue(slurm_env)} <= queued_before  # nothing new was queued


@pytest.mark.slow  # ~35 s; the default suite blocks cells of a failed pretraining on the local
# launcher (test_run.py) and runs the SLURM DAG itself (above)
def test_a_failed_pretraining_blocks_only_its_cells_which_are_cancelled(
    slurm_env: dict[str, str], tiny_dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    proc = run_module(
        "cass_hpc.run", "-m", "experiment=demo", "hydra/launcher=testcluster", f"runs_dir={runs}",
        f"dataset.path={tiny_dataset}", "label_fraction=1.0", "seed=0", "arm=cnn", *TINY,
        # every spread is below this: the CASS pretraining stops with a CollapseError
        "pretrain.collapse_action=stop", "pretrain.collapse_threshold=1e9",
        "pretrain.collapse_epochs=1", env=slurm_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wait_for(runs / "demo" / "summary" / "results.md", 300)
    record = json.loads(next((runs / "demo" / "submissions").glob("*.json")).read_text())
    times = sacct_times(slurm_env)
    (pre,) = record["pretrainings"]
    assert times[pre["job_id"]][0] == "FAILED"
    jobs = {next(o for o in c["overrides"] if o.startswith("method=")): c["job_id"]
            for c in record["cells"]}  # fmt: skip
    assert times[jobs["method=supervised"]][0] == "COMPLETED"
    # the blocked cell never started and is not left pending: the failed pretraining cancelled it
    assert times.get(jobs["method=cass"], ("CANCELLED", "None"))[:2] in (
        ("CANCELLED", "None"), ("CANCELLED", "Unknown"))  # fmt: skip
    assert not [j for j in squeue(slurm_env) if j[1] != "cass-collect"]
    logs = "".join(p.read_text() for p in runs.rglob(f"{pre['job_id']}_*log.*"))
    assert f"cancelled 1 job(s) that needed this one: {jobs['method=cass']}" in logs
    wide = {**slurm_env, "COLUMNS": "300"}
    status = run_module("cass_hpc.status", str(runs / "demo"), env=wide)
    assert status.returncode == 1, status.stdout
    assert "cell: 1 blocked, 1 done" in status.stdout, status.stdout
    assert "blocked by pretraining cass-cnn-vit-" in status.stdout
    assert "CollapseError" in status.stdout


@pytest.mark.slow  # ~3 min; the default suite preempts in-process (tests/test_preempt.py)
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
           "hydra/launcher=testcluster", "hydra.launcher.wait=true", f"runs_dir={runs}",
           *cell]  # fmt: skip
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
    job = [j[0] for j in squeue(slurm_env) if j[2] == "RUNNING"]  # the pretraining stage
    assert len(job) == 1, squeue(slurm_env)
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


@pytest.mark.slow  # ~1 min; the default suite's failed-pretraining test covers status on SLURM
def test_status_reports_a_cancelled_cell_while_the_others_finish(
    slurm_env: dict[str, str], tiny_dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "cass_hpc.run", "-m", "experiment=demo",
           "hydra/launcher=testcluster", "hydra.launcher.wait=true", f"runs_dir={runs}",
           f"dataset.path={tiny_dataset}",
           "image_size=32", "method=supervised", "label_fraction=1.0", "seed=0", "threads=1",
           "finetune.max_epochs=40", "finetune.patience=40", "finetune.batch_size=8"]  # fmt: skip
    launcher = subprocess.Popen(cmd, cwd=REPO, env=slurm_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(runs.rglob("state.json"))) < 2:
        time.sleep(0.2)
    jobs = sorted(j[0] for j in squeue(slurm_env) if j[1] == "cass-cell")
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


@pytest.mark.slow  # real time limits, several requeues: ~6 min
def test_a_stage_that_saves_progress_outlives_max_num_timeout_with_identical_metrics(
    slurm_env: dict[str, str], tiny_dataset: Path, tmp_path: Path
) -> None:
    cell = [f"dataset.path={tiny_dataset}", "image_size=32", "method=cass", "arm=vit",
            "label_fraction=1.0", "seed=0", "threads=1", "pretrain.epochs=200",
            "pretrain.batch_size=8", "model.out_dim=32", "+model.vit.kwargs.depth=1",
            "finetune.max_epochs=1", "finetune.batch_size=8"]  # fmt: skip
    reference = subprocess.Popen(  # the same cell, uninterrupted, locally, meanwhile
        [sys.executable, "-m", "cass_hpc.run", "experiment=demo", "hydra.mode=RUN",
         f"runs_dir={tmp_path / 'ref'}", *cell], cwd=REPO, env=slurm_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    runs = tmp_path / "runs"
    proc = run_module(
        "cass_hpc.run", "-m", "experiment=demo", "hydra/launcher=testcluster", f"runs_dir={runs}",
        *cell,
        # USR2 30–90 s into each attempt (SLURM signals up to 60 s early); the pretraining needs
        # ~2 min of compute, so several attempts — and max_num_timeout allows no requeue at all
        "hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=30",
        "hydra.launcher.max_num_timeout=0", env=slurm_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wait_for(runs / "demo" / "summary" / "results.md", 900)
    assert reference.wait(timeout=600) == 0
    (ref,) = (tmp_path / "ref").rglob("results.json")
    (got,) = runs.rglob("results.json")
    expected, resumed = json.loads(ref.read_text()), json.loads(got.read_text())
    assert resumed["pretrain"]["loss"] == expected["pretrain"]["loss"]
    assert resumed["metrics"] == expected["metrics"]
    record = json.loads(next((runs / "demo" / "submissions").glob("*.json")).read_text())
    (pre,) = record["pretrainings"]
    logs = "".join(p.read_text() for p in runs.rglob(f"{pre['job_id']}_*log.*"))
    requeues = logs.count("progress saved since this attempt started")
    assert requeues >= 1 and logs.count("resuming pretraining from") == requeues, logs[-3000:]
    sacct = ["sacct", "-D", "-n", "-X", "-j", pre["job_id"], "-o", "State"]
    history = subprocess.run(sacct, capture_output=True, text=True, env=slurm_env).stdout.split()
    assert history.count("REQUEUED") == requeues and history[-1] == "COMPLETED", history


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["label_fraction=0.1,1.5"], "label_fraction must be in (0, 1], got 1.5"),
        pytest.param(
            ["dataset.path=/nonexistent/data"],
            "/nonexistent/data: no manifest.json",
            marks=pytest.mark.slow,
        ),  # fmt: skip
        pytest.param(
            ["init=local", "weights.cnn=/nonexistent/cnn.pth", "weights.vit=/nonexistent/vit.pth"],
            "weights.cnn=/nonexistent/cnn.pth: no such file",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["hydra.launcher.timeout_min=1"],
            "hydra.launcher.timeout_min=1 leaves no time to save",
            marks=pytest.mark.slow,
        ),  # fmt: skip
        pytest.param(  # one of the fuzz's finds (tests/test_precheck_fuzz.py), on SLURM
            ["method=dino", "method.params.student_temp=-1"],
            "method.params.student_temp must be > 0, got -1",
            marks=pytest.mark.slow,
        ),  # fmt: skip
    ],
    ids=["label-fraction", "data-path", "weights", "time-limit", "fuzz-method-param"],
)
def test_a_bad_grid_fails_at_submission_with_one_line_and_queues_nothing(
    slurm_env: dict[str, str], tiny_dataset: Path, tmp_path: Path, overrides: list[str],
    message: str,
) -> None:  # fmt: skip
    proc = run_module(
        "cass_hpc.run", "-m", "experiment=demo", "hydra/launcher=testcluster",
        f"runs_dir={tmp_path / 'runs'}", f"dataset.path={tiny_dataset}", *TINY, *overrides,
        env=slurm_env,
    )  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert message in errors[0], errors
    assert "Traceback" not in proc.stderr
    assert not squeue(slurm_env) and not (tmp_path / "runs" / "demo" / "submissions").exists()
    assert not (tmp_path / "runs" / "demo" / "hydra").exists()  # no sweep folder left behind
