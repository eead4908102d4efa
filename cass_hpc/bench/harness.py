"""The measurements behind ``python -m cass_hpc.bench``: step times, loader rate, FLOP/s.

Every step is the pretraining loop's own (``step.prepare_step`` builds the nets and
optimisers, ``step.optimisation_step`` runs one optimisation step, ``step.RunningSums``
keeps the loop's bookkeeping), on one batch of views made by the method's own train_transform;
the methods come from the ``METHODS`` registry with their ``conf/`` settings. Times are medians of
``repeats`` steps after ``warmup`` steps, the methods interleaved, so that a machine's drift
(other jobs, clocks) falls on all of them alike.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from omegaconf import OmegaConf
from torch.utils.data import default_collate
from torch.utils.flop_counter import FlopCounterMode

from cass_hpc.data.dataset import ShardDataset
from cass_hpc.data.loader import make_loader, set_position
from cass_hpc.data.shards.reader import read_manifest
from cass_hpc.device import AUTOCAST_DTYPES
from cass_hpc.methods import METHODS
from cass_hpc.methods.base import PretrainMethod, Progress, Views
from cass_hpc.models import ArmSpec
from cass_hpc.pretrain import PretrainConfig
from cass_hpc.speed import StepSpeed
from cass_hpc.step import RunningSums, optimisation_step, prepare_step

CONF = Path(__file__).resolve().parents[2] / "conf"
# a step of the run's second epoch: DINO's last layer is no longer frozen (it is in the first)
PROGRESS = Progress(epoch=2, step=1, steps_per_epoch=100, epochs=100)


@dataclass(frozen=True)
class Pair:
    """A backbone pair of ``conf/model/<name>.yaml`` at one image size."""

    name: str
    arms: dict[str, ArmSpec]
    out_dim: int  # CASS head width


def load_pair(name: str, image_size: int) -> Pair:
    """``conf/model/<name>.yaml`` with ``image_size`` (ViTs are built for it)."""
    path = CONF / "model" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (CONF / "model").glob("*.yaml")))
        raise ValueError(f"unknown pair {name!r}; choose from {known}")
    cfg = OmegaConf.load(path)
    cfg.image_size = image_size
    model = OmegaConf.to_container(cfg, resolve=True)["model"]  # type: ignore[index]
    arms = {
        a: ArmSpec(m["name"], dict(m.get("kwargs") or {}), None)
        for a, m in model.items()
        if a in ("cnn", "vit")
    }
    return Pair(name, arms, int(model["out_dim"]))


def method_settings(name: str) -> tuple[dict[str, Any], PretrainConfig]:
    """A method's ``params`` and its loop settings (``conf/pretrain/paper.yaml`` with the
    method file's overrides: DINO's AdamW, clipping), as a grid cell gets them."""
    raw = OmegaConf.to_container(OmegaConf.load(CONF / "method" / f"{name}.yaml"), resolve=True)
    assert isinstance(raw, dict)
    if "method" in raw:  # a `_global_` file (DINO): method params + loop overrides
        params, loop = raw["method"].get("params") or {}, raw.get("pretrain") or {}
    else:
        params, loop = raw.get("params") or {}, {}
    base = OmegaConf.to_container(OmegaConf.load(CONF / "pretrain" / "paper.yaml"), resolve=True)
    assert isinstance(base, dict)
    return dict(params), PretrainConfig(**{**base, **loop})


def make_views(method: PretrainMethod, image_size: int, batch: int, seed: int = 0) -> Views:
    """One batch of views (a tensor, or DINO's list of crops) through the method's own
    augmentation, from random images."""
    rng = np.random.default_rng(seed)
    transform = method.train_transform(image_size)
    shape = (image_size, image_size, 3)
    views = default_collate(
        [transform(rng.integers(0, 256, shape, np.uint8)) for _ in range(batch)]
    )
    pin = torch.cuda.is_available()  # the loader pins batches when there is a GPU
    return (
        [v.pin_memory() for v in views]
        if isinstance(views, list) and pin
        else (views.pin_memory() if pin and isinstance(views, torch.Tensor) else views)
    )


class StepRunner:
    """One method's pretraining step, callable: what the loop does per batch."""

    def __init__(
        self,
        method: PretrainMethod,
        cfg: PretrainConfig,
        views: Views,
        accelerator: Accelerator,
        speed: StepSpeed,
    ) -> None:
        self.speed, self.cfg, self.views, self.accelerator = speed, cfg, views, accelerator
        self.method, self.arms, self.optimizers, _ = prepare_step(method, cfg, accelerator, speed)
        self.method.train()
        self.running = RunningSums(accelerator.device)
        self.steps = 0

    def __call__(self) -> None:
        out = optimisation_step(
            self.method,
            self.views,
            PROGRESS,
            self.optimizers,
            self.arms,
            self.cfg,
            self.accelerator,
        )
        if not torch.isfinite(out.loss):  # the loop's check (one host read per step)
            raise RuntimeError(f"{self.method.name}: loss {float(out.loss)} in the bench")
        self.running.add(out)
        self.steps += 1
        if self.speed.read_every and self.steps % self.speed.read_every == 0:
            self.running.read()


def build_runner(
    method_name: str,
    pair: Pair,
    arms: list[str],
    image_size: int,
    batch: int,
    accelerator: Accelerator,
    speed: StepSpeed,
    dino_out_dim: int | None = None,
) -> StepRunner:
    """A :class:`StepRunner` of ``method_name`` on ``arms`` of ``pair`` (CASS: both; DINO: one).
    ``dino_out_dim`` replaces DINO's 65,536 prototypes (tests only: not the paper's head)."""
    params, cfg = method_settings(method_name)
    if method_name == "dino" and dino_out_dim:
        params = {**params, "out_dim": dino_out_dim}
    cfg = replace(cfg, batch_size=batch)
    build = METHODS[method_name].build
    assert build is not None
    torch.manual_seed(0)
    method = build({a: pair.arms[a] for a in arms}, pair.out_dim, params)
    views = make_views(method, image_size, batch)
    return StepRunner(method, cfg, views, accelerator, speed)


def synchronize(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def time_interleaved(
    runners: dict[str, Callable[[], None]], warmup: int, repeats: int, device: torch.device
) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds per call of each runner over ``repeats`` rounds (one call of each per
    round, in turn) after ``warmup`` rounds; and the seconds each spent warming up (a compiled
    net compiles there)."""
    sync = synchronize(device)
    warm = dict.fromkeys(runners, 0.0)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(warmup + repeats):
        for name, run in runners.items():
            sync()
            t0 = time.perf_counter()
            run()
            sync()
            elapsed = time.perf_counter() - t0
            if round_ < warmup:
                warm[name] += elapsed
            else:
                times[name].append(elapsed)
    return {name: statistics.median(t) for name, t in times.items()}, warm


def count_flops(run: Callable[[], None]) -> int:
    """FLOPs of one call (matrix products, convolutions, attention; forward and backward), by
    ``torch.utils.flop_counter``. Element-wise work and the optimiser update are not counted."""
    with FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def matmul_ceiling(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 5) -> float:
    """Best FLOP/s of a square ``size`` matrix product in ``dtype`` on ``device``."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device, dtype)
    b = torch.randn(size, size, generator=generator).to(device, dtype)
    sync = synchronize(device)
    a @ b  # warm-up (library initialisation)
    best = 0.0
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        best = max(best, 2 * size**3 / (time.perf_counter() - t0))
    return best


def ceiling_dtype(precision: str) -> torch.dtype:
    """The dtype the step's matrix products run in under ``precision`` (Accelerate's name)."""
    return AUTOCAST_DTYPES[precision]


def pack_synthetic(out: Path, image_size: int, per_class: int) -> Path:
    """Pack the synthetic shapes set at ``image_size`` with the real ``preprocess`` CLI."""
    command = [
        sys.executable,
        "-m",
        "preprocess",
        "synthetic",
        "shapes",
        str(out),
        "--image-size",
        str(image_size),
        "--per-class",
        str(per_class),
        "--overwrite",
    ]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"packing synthetic data failed: {proc.stderr.strip()[-500:]}")
    return out


def loader_rate(
    data: Path, transform: Callable[[np.ndarray], Views], batch: int, workers: int, repeats: int
) -> float:
    """Median images/s of the real training loader (``make_loader`` over a ``ShardDataset``
    with the method's augmentation ``transform``) over ``repeats`` epochs, after one epoch of
    warm-up (worker start-up, file opening)."""
    dataset = ShardDataset(read_manifest(data), "train", transform)
    loader = make_loader(dataset, batch, train=True, seed=0, workers=workers)
    rates = []
    for epoch in range(1, repeats + 2):
        set_position(loader, epoch)
        t0, images = time.perf_counter(), 0
        for views, _labels in loader:
            images += (views[0] if isinstance(views, list) else views).shape[0]
        if epoch > 1:
            rates.append(images / (time.perf_counter() - t0))
    return statistics.median(rates)
