"""The speed harness (issue 15): `python -m cass_hpc.bench` writes P1, P2, P3 per size; the GPU
check refuses to run without a GPU and converts a measured rate into the paper's brain-MRI time."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from cass_hpc.bench import gpu
from cass_hpc.bench.__main__ import main as bench_main
from tests.conftest import run_module


def test_bench_writes_p1_p2_p3_and_the_variants_at_a_tiny_size(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    proc = run_module(
        "cass_hpc.bench", "--device", "cpu", "--sizes", "32", "--batch", "4", "--warmup", "0",
        "--repeats", "1", "--dino-out-dim", "256", "--variants", "base,auto", "--matmul", "256",
        "--data", str(tiny_dataset), "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "P1" in proc.stdout and "P2" in proc.stdout and "P3" in proc.stdout
    record = json.loads(out.read_text())
    assert record["device"] == "cpu" and record["pair"] == "demo_pair" and record["batch"] == 4
    assert record["dino_out_dim"] == 256
    (row,) = record["sizes"]
    assert row["image_size"] == 32
    assert set(row["step_s"]) == {"cass", "dino_cnn", "dino_vit"}
    for key in ("P1", "P2", "P3", "loader_images_per_s", "step_images_per_s",
                "flop_per_step", "achieved_flop_per_s", "matmul_ceiling_flop_per_s"):  # fmt: skip
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert row["P1"] == pytest.approx(
        row["step_s"]["cass"] / (row["step_s"]["dino_cnn"] + row["step_s"]["dino_vit"])
    )
    assert set(row["variants"]) == {"base", "auto"}


def test_bench_refuses_an_unknown_variant_in_one_line(capsys: pytest.CaptureFixture) -> None:
    assert bench_main(["--device", "cpu", "--variants", "auto,turbo"]) == 2
    err = capsys.readouterr().err
    assert "unknown speed variant 'turbo'" in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_bench_gpu_without_a_gpu_says_so_and_fails(capsys: pytest.CaptureFixture) -> None:
    assert gpu.main(["--out", "unused"]) == gpu.NO_GPU
    assert "no CUDA GPU" in capsys.readouterr().err


def test_implied_brain_mri_time_is_images_times_epochs_over_the_rate() -> None:
    assert gpu.implied_pretraining_s(5712 * 100 / 3600) == pytest.approx(3600)
    assert gpu.hours(gpu.PAPER_CASS_S) == "7 h 11 min"
    summary = gpu.implied({"sizes": [{"image_size": 384, "step_images_per_s": 57.12}]}, None)
    assert summary["from_step"] == "2 h 46 min" and summary["paper"] == "7 h 11 min"
