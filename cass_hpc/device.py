"""Where a cell runs and at which precision: the Accelerator it trains with, as configured.

``device``: auto (the GPU when torch sees one, else the CPU) | cpu | cuda. ``precision``: auto
(bf16 on GPUs that support it, fp16 on older ones, fp32 on the CPU) | no | fp16 | bf16. The
accelerator's ``device`` and ``mixed_precision`` go into results.json, so they must be what ran:
a request that would silently run otherwise is refused with a ValueError saying what to use —
``device=cuda`` without a CUDA device (Accelerate would fall back to the CPU), ``precision=fp16``
on the CPU (Accelerate enables fp16 autocast only on accelerators, so it would run fp32). bf16
on the CPU is applied (torch's CPU autocast). Usage::

    accelerator = make_accelerator("auto", "auto")
    accelerator.mixed_precision, accelerator.device   # e.g. ("no", device(type="cpu"))
"""

from __future__ import annotations

import torch
from accelerate import Accelerator

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "no", "fp16", "bf16")
AUTOCAST_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """The device ``device`` asks for; ValueError if it is unknown or absent."""
    if device not in DEVICES:
        raise ValueError(f"device must be {', '.join(DEVICES)}, got {device!r}")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ValueError(
            "device=cuda, but torch sees no CUDA device (torch.cuda.is_available() is False); "
            "use device=auto (the GPU when there is one) or device=cpu"
        )
    return torch.device("cuda" if device == "cuda" or (device == "auto" and cuda) else "cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    """Accelerate's ``mixed_precision`` for ``precision`` on ``device``; ValueError if unknown
    or if it would not be applied there."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "no"
    if precision == "fp16" and device.type == "cpu":
        raise ValueError(
            "precision=fp16 is not applied on the CPU (Accelerate autocasts fp16 only on a GPU: "
            "the run would be fp32 recorded as fp16); use precision=no there (fp32: bf16 autocast "
            "runs on a CPU but was 13x slower than fp32 on ours, cass_hpc/bench/PERF.md)"
        )
    return precision


def autocast_dtype(accelerator: Accelerator) -> torch.dtype:
    """The dtype a matrix product has under ``accelerator.autocast()``: the precision that runs."""
    ones = torch.ones(2, 2, device=accelerator.device)
    with accelerator.autocast():
        return (ones @ ones).dtype


def make_accelerator(device: str = "auto", precision: str = "auto") -> Accelerator:
    """The Accelerator for ``device`` and ``precision`` (module docstring), checked to autocast
    to the precision it reports."""
    target = resolve_device(device)
    mixed_precision = resolve_precision(precision, target)
    accelerator = Accelerator(cpu=target.type == "cpu", mixed_precision=mixed_precision)
    ran, expected = autocast_dtype(accelerator), AUTOCAST_DTYPES[accelerator.mixed_precision]
    if ran != expected:  # a guard against Accelerate's rules changing under us
        raise ValueError(
            f"precision={precision} on {accelerator.device}: autocast computes in {ran}, not "
            f"{expected}; use precision=no"
        )
    return accelerator
