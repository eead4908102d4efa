"""How fast a pretraining step runs: the optimisations that change speed, not results (issue 15).

Each is a switch of :class:`StepSpeed`; ``StepSpeed.auto(device)`` is the default the loop uses,
chosen from what ``python -m cass_hpc.bench`` measured (``cass_hpc/bench/PERF.md``):

* ``channels_last``: CNN arms (and DINO's teacher of a CNN) in NHWC, the layout cuDNN's and
  oneDNN's fast convolutions use. ViTs are left alone (their one conv is the patch embedding).
* ``fused_optimizer``: Adam/AdamW's fused kernel (one launch for all parameters; with fp16 it
  takes the scaler's unscale and skip on the device).
* ``compile``: ``torch.compile`` of every net; a net that fails to compile runs eager, with a
  warning (``torch._dynamo.config.suppress_errors``).
* ``read_every``: read the running loss and spread to the host every N steps (0 = once per
  epoch). Each read waits for the GPU; the per-step NaN check stays (it guards the weights).

Usage::

    speed = StepSpeed.auto(torch.device("cuda"))
    converted = apply_speed(method, speed)   # arms put in channels_last
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

VARIANTS = ("base", "auto", "channels_last", "fused", "compile", "epoch_reads")
ALLOWED = {  # what a switch of each type accepts, as the error says it
    bool: "true, false or null (the device's default)",
    int: "an integer >= 0 (0 = once per epoch) or null (the device's default)",
}


@dataclass(frozen=True)
class StepSpeed:
    """Speed switches of the pretraining step (module docstring)."""

    channels_last: bool = False  # CNN arms in NHWC memory layout
    fused_optimizer: bool = False  # fused Adam/AdamW kernels
    compile: bool = False  # torch.compile every net (falls back to eager on failure)
    read_every: int = 1  # host reads of loss/spread: every N steps; 0 = once per epoch

    def __post_init__(self) -> None:
        if self.read_every < 0:
            raise ValueError(f"read_every must be >= 0 (0 = once per epoch), got {self.read_every}")

    @classmethod
    def auto(cls, device: torch.device) -> StepSpeed:
        """The loop's default on ``device``: every switch the bench measured as a win there.

        On CUDA: channels_last, fused Adam/AdamW and one host read per epoch (the known wins
        on GPUs; ``make bench-gpu`` measures each). On the CPU only the per-epoch read: the
        harness measured channels_last and fused Adam within 3 % of off there (PERF.md), so CPU
        runs keep the layout they had. ``compile`` stays off: its compilation takes minutes."""
        if device.type == "cuda":
            return cls(channels_last=True, fused_optimizer=True, compile=False, read_every=0)
        return cls(channels_last=False, fused_optimizer=False, compile=False, read_every=0)

    @classmethod
    def configured(cls, device: torch.device, settings: Mapping[str, Any] | None) -> StepSpeed:
        """``auto(device)`` with the switches ``settings`` sets (``conf/config.yaml: speed``;
        None = the device's default). ValueError naming an unknown switch or a value of the
        wrong type (``speed.compile=yes`` is not ``true``)."""
        chosen = {k: v for k, v in (settings or {}).items() if v is not None}
        defaults = {f.name: f.default for f in fields(cls)}
        if unknown := sorted(set(chosen) - set(defaults)):
            raise ValueError(f"unknown speed switch(es) {unknown}; choose from {list(defaults)}")
        for name, value in chosen.items():
            if type(value) is not type(defaults[name]):  # bool is no int here, nor 1 a bool
                raise ValueError(
                    f"speed.{name} must be {ALLOWED[type(defaults[name])]}, got {value!r}"
                )
        return replace(cls.auto(device), **chosen)

    @classmethod
    def variant(cls, name: str, device: torch.device) -> StepSpeed:
        """A named setting for the bench: ``base`` (all off, a host read per step: the loop
        before issue 15), ``auto`` (the default), or ``base`` with one switch on."""
        if name not in VARIANTS:
            raise ValueError(f"unknown speed variant {name!r}; choose from {', '.join(VARIANTS)}")
        base = cls()
        return {
            "base": base,
            "auto": cls.auto(device),
            "channels_last": replace(base, channels_last=True),
            "fused": replace(base, fused_optimizer=True),
            "compile": replace(base, compile=True),
            "epoch_reads": replace(base, read_every=0),  # base, minus the per-step reads
        }[name]


def is_convnet(module: nn.Module) -> bool:
    """A net with more than one 2-D convolution (a ViT has one: its patch embedding)."""
    return sum(isinstance(m, nn.Conv2d) for m in module.modules()) > 1


def apply_speed(method: nn.Module, speed: StepSpeed) -> list[str]:
    """Apply ``speed``'s model-side switches to ``method`` in place (before its optimisers are
    built); return the names of the top-level nets put in channels_last."""
    converted: list[str] = []
    if speed.channels_last:
        for name, child in _nets(method):
            if is_convnet(child):
                child.to(memory_format=torch.channels_last)
                converted.append(name)
    if speed.compile:
        import torch._dynamo as dynamo

        dynamo.config.suppress_errors = True  # a graph that fails runs eager (warned)
        for name, child in _nets(method):
            try:
                child.compile()
            except Exception as error:  # noqa: BLE001 - any failure means: run eager
                log.warning("torch.compile of %s failed (%s); it runs eager", name, error)
    return converted


def _nets(method: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every net of a method: the arms, and any other module (DINO's teacher)."""
    nets: list[tuple[str, nn.Module]] = []
    for name, child in method.named_children():
        if isinstance(child, nn.ModuleDict):
            nets.extend((f"{name}.{k}", v) for k, v in child.items())
        else:
            nets.append((name, child))
    return nets
