"""A real Hydra multirun of the demo experiment through submitit_local, at a tiny budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, TINY_BUDGET, run_module

TINY = [*TINY_BUDGET, "hydra.launcher.parallelism=2", "+model.vit.kwargs.depth=2"]


def test_demo_multirun_runs_every_cell_and_shares_pretraining(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    args = [
        "cass_hpc.run",
        "-m",
        "experiment=demo",
        f"runs_dir={runs}",
        f"dataset.path={tiny_dataset}",
        "label_fraction=1.0",  # one fraction, one seed (4 cells) keep the suite short
        "seed=0",
        *TINY,
    ]
    proc = run_module(*args, env={**os.environ, "HF_HUB_OFFLINE": "0"})  # the toolkit sets it
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    results = [json.loads(p.read_text()) for p in (runs / "demo").rglob("results.json")]
    assert {r["environment"]["HF_HUB_OFFLINE"] for r in results} == {"1"}  # every job: offline
    cells = {(r["method"], r["label_fraction"], r["arm"], r["seed"]) for r in results}
    assert len(results) == 4 and len(cells) == 4
    for r in results:
        assert set(r["metrics"]) >= {"macro_f1", "micro_f1", "balanced_accuracy"}
        assert 0.0 <= r["metrics"]["macro_f1"] <= 1.0
        assert r["synthetic"] is True
        assert (r["pretrain"] is None) == (r["method"] == "supervised")

    # CASS pretraining ran once, as its own stage, and both arms reused it.
    pretrain_dirs = sorted((runs / "demo" / "pretrain").iterdir())
    assert len(pretrain_dirs) == 1
    keys_by_seed = {}
    for r in results:
        if r["method"] == "cass":
            keys_by_seed.setdefault(r["seed"], set()).add(r["pretrain"]["key"])
            assert r["pretrain"]["wall_s"] > 0 and r["pretrain"]["images_per_s"] > 0
    assert {s: len(k) for s, k in keys_by_seed.items()} == {0: 1}
    for d in pretrain_dirs:
        files = {p.name for p in d.iterdir()}
        assert {"cnn.pt", "vit.pt", "pretrain.json"} <= files
        assert "checkpoint.pt" not in files  # optimiser state is dropped once done

    # The collector builds the paper-shaped table from the grid.
    proc = run_module("cass_hpc.collect", str(runs / "demo"))
    assert proc.returncode == 0, proc.stderr
    table = (runs / "demo" / "summary" / "results.md").read_text()
    for row in ("CASS · CNN (resnet10t)", "Supervised · ViT (vit_tiny_patch16_224)"):
        assert row in table
    assert "4 of 4" in proc.stdout
    for row in ("CASS · val-selected arm", "CASS · ensemble"):  # both arms together (issue 14)
        assert row in table

    # The paper's maps and the embedding plots come from the cells' kept weights.
    proc = run_module("cass_hpc.maps", str(runs / "demo"), "--samples", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    pngs = {p.name.split("-")[0] for p in (runs / "demo" / "summary" / "maps").glob("*.png")}
    assert pngs == {"maps", "embeddings"}

    # Re-running a finished cell (same resolved config) trains nothing and rewrites nothing.
    before = {p: p.stat().st_mtime_ns for p in (runs / "demo").rglob("results.json")}
    one_cell = [a for a in args if a != "-m"] + [
        "method=cass",
        "arm=vit",
        "hydra.mode=RUN",
    ]
    proc = run_module(*one_cell)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already done" in proc.stdout + proc.stderr
    after = {p: p.stat().st_mtime_ns for p in (runs / "demo").rglob("results.json")}
    assert after == before


@pytest.mark.slow  # ~18 s; the default suite's demo grid runs the local launcher
def test_a_local_grid_runs_pretrainings_first_and_a_failed_one_blocks_only_its_cells(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    proc = run_module(
        "cass_hpc.run", "-m", "experiment=demo", f"runs_dir={runs}",
        f"dataset.path={tiny_dataset}", "label_fraction=1.0", "seed=0", "arm=cnn", *TINY,
        # every spread is below this: the CASS pretraining stops with a CollapseError
        "pretrain.collapse_action=stop", "pretrain.collapse_threshold=1e9",
        "pretrain.collapse_epochs=1",
    )  # fmt: skip
    assert proc.returncode != 0  # the sweep reports its failed cell
    assert "blocked by pretraining cass-cnn-vit-" in proc.stderr, proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in (runs / "demo").rglob("results.json")]
    assert [r["method"] for r in results] == ["supervised"]  # the other cell finished
    assert not list((runs / "demo").rglob("finetune_checkpoint.pt"))  # the CASS cell never ran
    wide = {**os.environ, "COLUMNS": "300"}
    status = run_module("cass_hpc.status", str(runs / "demo"), env=wide)
    assert status.returncode == 1, status.stdout
    assert "pretrain: 1 failed" in status.stdout and "cell: 1 blocked, 1 done" in status.stdout
    assert "CollapseError" in status.stdout


def test_a_refused_single_run_says_why_in_one_line_and_leaves_no_folder(tmp_path: Path) -> None:
    """Refused once the cell reads its data (bad values are refused earlier, with the config:
    tests/test_config.py), so the check that it began no work is the one exercised."""
    runs, missing = tmp_path / "runs", tmp_path / "not-packed"
    proc = run_module(
        "cass_hpc.run", f"runs_dir={runs}", f"dataset.path={missing}", *TINY_BUDGET, timeout=300
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "error:" in line]
    assert len(errors) == 1 and f"{missing}: no manifest.json" in errors[0], errors
    assert "Traceback" not in proc.stderr
    assert not (runs / "default").exists(), sorted(runs.rglob("*"))  # no Hydra run folder left


def test_item9_a_run_its_cell_check_refuses_leaves_no_stage_folder(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """Issue 27 item 9: a single run refused by the cell's own check (a method param the config
    reader cannot judge alone) says why in one line and leaves no stage folder, no Hydra folder:
    the run store is as it was (here: absent)."""
    runs = tmp_path / "runs"
    proc = run_module(
        "cass_hpc.run", f"runs_dir={runs}", f"dataset.path={tiny_dataset}", "method=dino",
        "method.params.student_temp=-1", *TINY_BUDGET, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "error:" in line]
    assert errors == [f"{errors[0].split('error:')[0]}error: method.params.student_temp must be "
                      "> 0, got -1"], errors  # fmt: skip
    assert "Traceback" not in proc.stderr
    assert not runs.exists() or not any(runs.rglob("*")), sorted(runs.rglob("*"))


@pytest.mark.slow  # two grids side by side: ~1 min
def test_two_identical_local_grids_started_together_compute_each_stage_once(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "cass_hpc.run", "-m", "experiment=demo", f"runs_dir={runs}",
           f"dataset.path={tiny_dataset}", "method=cass", "label_fraction=1.0", "seed=0",
           *TINY_BUDGET, "+model.vit.kwargs.depth=2", "threads=1"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    grids = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]  # fmt: skip
    outputs = [g.communicate(timeout=600)[0] for g in grids]
    assert [g.returncode for g in grids] == [0, 0], outputs
    sweeps = sorted((runs / "demo" / "hydra").iterdir())
    assert len(sweeps) == 2  # each launch got its own sweep folder, even in the same second
    logs = "".join(p.read_text() for p in (runs / "demo" / "hydra").rglob("*_log.*"))
    assert logs.count("pretrain cass epoch 1/1") == 1  # pretrained once, by one of the grids
    assert logs.count("fine-tuning cass/cnn at label fraction") == 1
    assert logs.count("fine-tuning cass/vit at label fraction") == 1
    assert len(list((runs / "demo").rglob("results.json"))) == 2


@pytest.mark.slow  # ~30 s each
@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c", "sigint-ignored"])
def test_item10_ctrl_c_or_sigterm_stops_a_local_grid_in_one_line(
    stop: str, tiny_dataset: Path, tmp_path: Path
) -> None:
    """Issue 27 item 10: SIGTERM to a local grid, Ctrl-C at a terminal (SIGINT to the whole
    foreground process group) and SIGTERM to a grid started with SIGINT ignored (``cmd &`` in a
    script) each stop every running job (state ``interrupted``) and end with the one line
    "interrupted; run the same command to resume" — no traceback from submitit's controllers."""
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "cass_hpc.run", "-m", "experiment=demo", f"runs_dir={runs}",
           f"dataset.path={tiny_dataset}", "method=supervised", "label_fraction=1.0", "seed=0",
           *TINY, "finetune.max_epochs=400", "finetune.patience=400"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    ignore = (
        (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if stop == "sigint-ignored" else None
    )
    grid = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=ignore)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(runs.rglob("finetune_checkpoint.pt"))) < 2:
        time.sleep(0.2)  # both cells are fine-tuning
    if stop == "ctrl-c":
        os.killpg(grid.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
    else:
        grid.send_signal(signal.SIGTERM)
    out = grid.communicate(timeout=120)[0]
    assert grid.returncode == 130 and "interrupted; run the same command to resume" in out, out
    assert "Traceback" not in out, out
    states = [json.loads(p.read_text())["state"] for p in runs.rglob("cells/*/state.json")]
    assert states == ["interrupted", "interrupted"], states
    sweep = str(next((runs / "demo" / "hydra").iterdir()))
    assert not [pid for pid in Path("/proc").glob("[0-9]*") if sweep in _cmdline(pid)], (
        "jobs of the grid still run after it stopped"
    )


def _cmdline(pid: Path) -> str:
    try:
        return (pid / "cmdline").read_bytes().decode(errors="replace")
    except OSError:  # the process ended meanwhile
        return ""
