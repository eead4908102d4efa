"""Kill a local run with SIGKILL mid-run, rerun the same command: it resumes from its last
checkpoint and ends with exactly the metrics of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_module

CELL = ["image_size=32", "method=cass", "arm=vit", "label_fraction=1.0", "seed=0", "threads=1",
        "pretrain.epochs=4", "pretrain.batch_size=8", "finetune.max_epochs=3",
        "finetune.batch_size=8", "+model.vit.kwargs.depth=2", "model.out_dim=32"]  # fmt: skip


def results(runs: Path) -> dict:
    (path,) = runs.rglob("results.json")
    return json.loads(path.read_text())


@pytest.mark.slow  # three runs, ~26 s; resume itself is in the default suite (test_cell's Ctrl-C,
# test_pretrain's kill between epochs, test_preempt's SIGUSR2 mid-epoch)
def test_sigkilled_run_resumes_from_its_checkpoint_with_identical_metrics(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    args = [f"dataset.path={tiny_dataset}", *CELL]
    proc = run_module("cass_hpc.run", f"runs_dir={tmp_path / 'ref'}", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = results(tmp_path / "ref")

    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "cass_hpc.run", f"runs_dir={cut}", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    victim = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        ckpts = list(cut.rglob("pretrain/*/checkpoint.pt"))
        if ckpts and torch.load(ckpts[0], weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.05)
    assert victim.poll() is None, "the run finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not list(cut.rglob("results.json"))

    proc = run_module("cass_hpc.run", f"runs_dir={cut}", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming pretraining" in proc.stdout + proc.stderr
    resumed = results(cut)
    assert resumed["metrics"] == reference["metrics"]
    assert resumed["pretrain"]["loss"] == reference["pretrain"]["loss"]
    assert resumed["finetune"]["history"] == reference["finetune"]["history"]
