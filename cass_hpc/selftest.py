"""``python -m cass_hpc.selftest``: does this installation (a container image above all) work?

The image's ``%test`` (containers/cass.def) and the last step of containers/Containerfile. It

1. imports every dependency the project declares (and the Hydra launcher plug-in jobs unpickle);
2. packs a tiny SYNTHETIC dataset (4 classes x 4 images at 32 px) into a temporary directory
   with the real ``python -m preprocess`` command;
3. runs one grid cell through the real entry point, ``python -m cass_hpc.run -m``, on
   hydra-submitit-launcher's local launcher: the cell runs in a fresh process that unpickles
   the launcher, as a SLURM job does inside the image. The cell pretrains CASS for one epoch
   (one step of 8 images) and fine-tunes the ViT for one epoch, on the CPU by default.

Nothing is downloaded (``HF_HUB_OFFLINE=1``). It prints one line per stage and exits 0, or
exits 1 with one line naming the stage that failed. ``--device cuda`` runs the cell on the GPU:
``apptainer exec --nv cass.sif python -m cass_hpc.selftest --device cuda`` checks a GPU node.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

DISTRIBUTION = "cass-hpc"
# Modules a job imports by name that the distribution-to-module map cannot name: the launcher
# plug-in lives in the ``hydra_plugins`` namespace, which imports even when the plug-in is absent.
EXTRA_MODULES = ("hydra_plugins.hydra_submitit_launcher.submitit_launcher", "cass_hpc.run")
TINY_CELL = (
    "experiment_name=selftest",
    "hydra/launcher=local",
    "method=cass",
    "arm=vit",
    "label_fraction=1.0",
    "seed=0",
    "image_size=32",
    "threads=1",
    "model.out_dim=32",
    "+model.vit.kwargs.depth=1",
    "pretrain.epochs=1",
    "pretrain.batch_size=8",
    "finetune.max_epochs=1",
    "finetune.batch_size=8",
)


class SelftestError(RuntimeError):
    """One stage of the self-test failed; the message says which and why."""


def dependency_modules(distribution: str = DISTRIBUTION) -> dict[str, list[str]]:
    """Top-level modules of every requirement ``distribution`` declares (extras included)."""
    try:
        requirements = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise SelftestError(f"{distribution} is not installed (pip install -e .)") from None
    providers: dict[str, list[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            providers.setdefault(_normalise(dist), []).append(module)
    modules = {}
    for requirement in requirements:
        name = _normalise(re.split(r"[ ;<>=!~\[]", requirement, maxsplit=1)[0])
        if name not in providers:
            raise SelftestError(
                f"dependency {name} ({distribution} declares it) is not installed: is it "
                f"missing from requirements.lock?"
            )
        modules[name] = sorted(m for m in providers[name] if not m.startswith("_"))
    return modules


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def import_everything() -> list[str]:
    """Import every dependency's modules; return ``name version`` for each requirement."""
    found = []
    for name, modules in sorted(dependency_modules().items()):
        for module in modules:
            _import(module, name)
        found.append(f"{name} {importlib.metadata.version(name)}")
    for module in EXTRA_MODULES:
        _import(module, DISTRIBUTION)
    return found


def _import(module: str, requirement: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as err:  # whatever breaks the import is the finding
        failure = f"{type(err).__name__}: {err}"
        raise SelftestError(f"import {module} ({requirement}): {failure}") from err


def _run(args: Sequence[str], cwd: Path, stage: str, timeout_s: float) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        lines = [line for line in lines if "HYDRA_FULL_ERROR" not in line] or ["no output"]
        raise SelftestError(f"{stage}: exit status {proc.returncode}: {lines[-1].strip()}")
    return proc.stdout


def run_tiny_cell(work: Path, device: str = "cpu", timeout_s: float = 600) -> dict:
    """Pack the tiny dataset under ``work`` and run one cell; return its results.json record."""
    data, runs = work / "data", work / "runs"
    pack = ["-m", "preprocess", "synthetic", "shapes", str(data)]
    pack += ["--per-class", "4", "--image-size", "32"]
    _run(pack, work, "pack the synthetic dataset", timeout_s)
    cell = ["-m", "cass_hpc.run", "-m", f"dataset.path={data}", f"runs_dir={runs}"]
    _run([*cell, *TINY_CELL, f"device={device}"], work, "run one cell (Hydra multirun)", timeout_s)
    found = sorted((runs / "selftest").rglob("results.json"))
    if len(found) != 1:
        raise SelftestError(f"run one cell: {len(found)} results.json under {runs}, expected 1")
    record = json.loads(found[0].read_text())
    pretrain = record.get("pretrain") or {}
    losses = pretrain.get("loss") or [math.nan]
    if not pretrain.get("images") or not all(math.isfinite(x) for x in losses):
        raise SelftestError(f"pretraining recorded no images or a non-finite loss: {losses}")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cass_hpc.selftest", description=__doc__)
    parser.add_argument(
        "--device", choices=("cpu", "auto", "cuda"), default="cpu", help="where the cell runs"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        found = import_everything()
        import torch

        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"
        print(f"imports: {len(found)} dependencies ({', '.join(found)}); CUDA: {cuda}")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise SelftestError("--device cuda: no GPU visible (apptainer needs --nv)")
        with tempfile.TemporaryDirectory(prefix="cass-selftest-") as tmp:
            record = run_tiny_cell(Path(tmp), args.device)
    except (SelftestError, subprocess.TimeoutExpired) as err:
        print(f"selftest FAILED: {err}", file=sys.stderr)
        return 1
    pretrain = record["pretrain"]
    print(
        f"one cell (CASS pretraining {pretrain['images']} images on {pretrain['device']}, "
        f"loss {pretrain['loss'][-1]:.4f}; ViT fine-tuned, test macro-F1 "
        f"{record['metrics']['macro_f1']:.3f}) through Hydra + submitit_local on SYNTHETIC data"
    )
    print(f"selftest passed in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
