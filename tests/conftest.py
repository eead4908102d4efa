"""Shared fixtures: a tiny packed synthetic dataset made by the real `preprocess` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# a grid cell at the smallest budget that still pretrains and fine-tunes (32 px, 1 epoch each)
TINY_BUDGET = ["image_size=32", "pretrain.epochs=1", "pretrain.batch_size=8",
               "finetune.max_epochs=1", "finetune.batch_size=8", "model.out_dim=32"]  # fmt: skip


def run_module(
    *args: str, cwd: Path = REPO, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m <args>`` as a user would, offline (unless ``env`` sets HF_HUB_OFFLINE
    itself, to check that the toolkit switches the hub off), and return the finished process."""
    env = {"HF_HUB_OFFLINE": "1", **(env or os.environ), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 synthetic classes × 12 images at 32 px, packed into real HDF5 shards."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    proc = run_module(
        "preprocess", "synthetic", "shapes", str(out), "--per-class", "12", "--image-size", "32"
    )
    assert proc.returncode == 0, proc.stderr
    return out
