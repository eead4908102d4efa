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
from cass_hpc.speed import StepSpeed
from tests.conftest import run_module


@pytest.mark.slow  # ~30 s; `make test-slow` (run it before a GPU session)
def test_the_gpu_check_rehearsed_on_the_cpu_runs_every_part_and_the_harness_writes_p1_p2_p3(
    tmp_path: Path,
) -> None:
    """`make bench-gpu --rehearse`: the GPU check's every part (harness in two precisions with
    the speed variants, one epoch through the real loop, the implied brain-MRI time, a verdict
    per switch) at a toy size on the CPU, so the script is known to run before a GPU is spent."""
    proc = run_module("cass_hpc.bench.gpu", "--rehearse", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "bench-gpu summary (CPU rehearsal" in proc.stdout and "mean nothing" in proc.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["parts"]) == {"no", "epoch"}  # no second precision or compile part
    assert summary["parts"]["epoch"]["steps"] >= 1 and summary["parts"]["epoch"]["wall_s"] > 0
    assert {"from_step", "from_epoch", "paper"} <= set(summary["implied"])
    switches = summary["switches"]
    assert set(switches) == {"channels_last", "fused", "epoch_reads"}
    assert all(
        v["verdict"] in ("win", "loss", "noise") and v["ratio"] > 0 for v in switches.values()
    )
    assert not switches["channels_last"]["default"] and switches["epoch_reads"]["default"]  # CPU
    record = json.loads((tmp_path / "bench-no.json").read_text())
    assert record["device"] == "cpu" and record["precision"] == "no"
    assert record["pair"] == "demo_pair" and record["batch"] == 4 and record["dino_out_dim"] == 256
    (row,) = record["sizes"]
    assert row["image_size"] == 32
    assert set(row["step_s"]) == {"cass", "dino_cnn", "dino_vit"}
    for key in ("P1", "P2", "P3", "loader_images_per_s", "step_images_per_s",
                "flop_per_step", "achieved_flop_per_s", "matmul_ceiling_flop_per_s"):  # fmt: skip
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert row["P1"] == pytest.approx(
        row["step_s"]["cass"] / (row["step_s"]["dino_cnn"] + row["step_s"]["dino_vit"])
    )
    assert set(row["variants"]) == {"base", "auto", "channels_last", "fused", "epoch_reads"}


def test_a_switch_that_loses_where_it_is_on_by_default_is_called_out() -> None:
    part = {"sizes": [{"image_size": 384, "variants": {
        "base": {"step_s": 1.0}, "channels_last": {"step_s": 0.8},
        "fused": {"step_s": 1.2}, "epoch_reads": {"step_s": 1.01}}}]}  # fmt: skip
    auto = StepSpeed(channels_last=True, fused_optimizer=True, read_every=0)
    got = gpu.verdicts({"bf16": part, "epoch": {"wall_s": 1.0}, "fp16": None}, auto)
    assert {k: v["verdict"] for k, v in got.items()} == {
        "channels_last": "win", "fused": "loss", "epoch_reads": "noise"
    }  # fmt: skip
    assert got["fused"]["ratio"] == pytest.approx(1.2) and got["fused"]["default"]


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
