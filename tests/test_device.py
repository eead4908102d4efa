"""Device and precision: what a cell records is what ran, and a request that would not run as
asked (no GPU for device=cuda, fp16 on the CPU) is refused with one line saying what to use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from cass_hpc.device import make_accelerator


@pytest.fixture(autouse=True)
def fresh_accelerator_state() -> Iterator[None]:
    """Accelerate keeps one process-wide state: give each test its own, and leave none behind
    (a bf16 state would silently become every later test's default precision)."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _forward_dtype(accelerator: Accelerator) -> torch.dtype:
    """The dtype of a tiny forward pass under the accelerator's autocast, as the loops run it."""
    layer = torch.nn.Linear(4, 3).to(accelerator.device)
    with accelerator.autocast():
        return layer(torch.ones(2, 4, device=accelerator.device)).dtype


def test_cuda_without_a_gpu_is_refused_instead_of_running_on_the_cpu(no_gpu: None) -> None:
    with pytest.raises(ValueError) as info:
        make_accelerator("cuda", "auto")
    message = str(info.value)
    assert message.startswith("device=cuda, but torch sees no CUDA device")
    assert "use device=auto" in message and "device=cpu" in message and "\n" not in message


def test_fp16_on_the_cpu_is_refused_since_accelerate_would_not_apply_it(no_gpu: None) -> None:
    for device in ("cpu", "auto"):
        with pytest.raises(ValueError, match=r"^precision=fp16 is not applied on the CPU .*bf16"):
            make_accelerator(device, "fp16")


def test_accelerate_runs_fp16_on_the_cpu_as_fp32() -> None:
    """Why fp16 is refused on the CPU: Accelerate accepts it and never autocasts (if this
    starts failing, Accelerate applies fp16 on the CPU and the refusal can go)."""
    accelerator = Accelerator(cpu=True, mixed_precision="fp16")
    assert accelerator.mixed_precision == "fp16" and _forward_dtype(accelerator) == torch.float32


@pytest.mark.parametrize(
    ("device", "precision", "recorded", "dtype"),
    [
        ("auto", "auto", "no", torch.float32),
        ("cpu", "no", "no", torch.float32),
        ("cpu", "bf16", "bf16", torch.bfloat16),
    ],
)
def test_recorded_precision_and_device_are_what_autocast_runs(
    no_gpu: None, device: str, precision: str, recorded: str, dtype: torch.dtype
) -> None:
    accelerator = make_accelerator(device, precision)
    assert accelerator.mixed_precision == recorded and str(accelerator.device) == "cpu"
    assert _forward_dtype(accelerator) == dtype


@pytest.mark.parametrize(("device", "precision"), [("gpu", "auto"), ("cpu", "fp32")])
def test_unknown_device_or_precision_names_the_choices(device: str, precision: str) -> None:
    with pytest.raises(ValueError, match=r"must be auto, .*, got '(gpu|fp32)'$"):
        make_accelerator(device, precision)
