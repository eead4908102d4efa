"""``python -m cass_hpc.bench.gpu`` (``make bench-gpu``): the five-minute check of a GPU.

In order, each part skipped with a message once ``--budget-s`` is spent:

1. the harness (``python -m cass_hpc.bench``) on the paper pair (ResNet-50 + ViT-B/16) at 224
   and 384 px, batch 16, in the GPU's default precision (bf16 where supported, else fp16), with
   the speed variants at 384 px;
2. one CASS pretraining epoch of the paper pair at 384 px on synthetic data, through the real
   loop (``pretrain.pretrain``, loader included), with the peak GPU memory; and the implied
   pretraining time of the paper's brain-MRI set (5,712 training images, 100 epochs) beside the
   paper's 7 h 11 min on one RTX8000 (Table 1);
3. the harness in the other precision (fp16 on a bf16 GPU), without variants;
4. the ``torch.compile`` variant (minutes of compilation; a failure falls back to eager).

Each harness run is its own process (Accelerate fixes one precision per process). Without a
GPU it says so and exits with status 3. ``--rehearse`` runs parts 1 and 2 on the CPU at a toy
size (the demo pair at 32 px, fp32, one step each) in about half a minute: a check that the
script works before GPU time is spent on it, not a measurement.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from cass_hpc import store
from cass_hpc.speed import StepSpeed

PAPER_IMAGES, PAPER_EPOCHS = 5712, 100  # brain-MRI training set, pretraining epochs (CASS §4)
PAPER_CASS_S = 7 * 3600 + 11 * 60  # CASS on brain MRI: 7 h 11 min on one RTX8000 (Table 1)
NO_GPU = 3
REHEARSAL = "CPU rehearsal"


@dataclass(frozen=True)
class Plan:
    """What the check runs: the GPU's plan, or the CPU rehearsal of it (``--rehearse``)."""

    device: str = "cuda"
    pair: str = "paper_pair"
    sizes: str = "224,384"
    size: int = 384  # of the variants, the epoch and the implied brain-MRI time
    batch: int = 16
    harness_args: tuple[str, ...] = ()  # extra harness options (the rehearsal's toy settings)
    compile: bool = True  # the torch.compile part, when time is left

    @classmethod
    def rehearsal(cls) -> Plan:
        toy = ("--warmup", "0", "--repeats", "1", "--dino-out-dim", "256", "--matmul", "256")
        return cls("cpu", "demo_pair", "32", 32, 4, toy, compile=False)

    def precisions(self) -> tuple[str, str | None]:
        """The main precision (the GPU's default) and the other one measured after it."""
        if self.device == "cpu":  # fp32: CPU bf16 autocast is slow (PERF.md), fp16 absent
            return "no", None
        main = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return main, ("fp16" if main == "bf16" else None)


def hours(seconds: float) -> str:
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def implied_pretraining_s(images_per_s: float) -> float:
    """Seconds to pretrain on the paper's brain-MRI set (5,712 images x 100 epochs)."""
    if images_per_s <= 0:
        raise ValueError(f"images_per_s must be > 0, got {images_per_s}")
    return PAPER_IMAGES * PAPER_EPOCHS / images_per_s


def harness(
    plan: Plan, out: Path, precision: str, extra: list[str], timeout_s: float
) -> dict | None:
    """One harness process; its JSON record, or None (with the reason printed)."""
    command = [
        sys.executable, "-m", "cass_hpc.bench", "--device", plan.device,
        "--precision", precision, "--pair", plan.pair, "--batch", str(plan.batch),
        "--sizes", plan.sizes, "--variant-size", str(plan.size), "--out", str(out),
        *plan.harness_args, *extra,
    ]  # fmt: skip
    print("$ python", " ".join(command[1:]), flush=True)
    try:
        proc = subprocess.run(command, timeout=max(10.0, timeout_s))
    except subprocess.TimeoutExpired:
        print(f"  stopped after {timeout_s:.0f} s (the check's budget)", flush=True)
        return None
    if proc.returncode != 0:
        print(f"  failed with status {proc.returncode}", flush=True)
        return None
    return store.read_json(out)


def one_epoch(tmp: Path, per_class: int, plan: Plan) -> dict[str, Any]:
    """One CASS epoch of ``plan``'s pair at its size through the real loop; its record."""
    from cass_hpc.bench.harness import load_pair, method_settings, pack_synthetic
    from cass_hpc.data.dataset import ShardDataset
    from cass_hpc.data.loader import make_loader
    from cass_hpc.data.shards.reader import read_manifest
    from cass_hpc.device import make_accelerator
    from cass_hpc.methods import METHODS
    from cass_hpc.pretrain import pretrain

    size = plan.size
    data = pack_synthetic(tmp / f"shapes{size}", size, per_class)
    pair = load_pair(plan.pair, size)
    params, cfg = method_settings("cass")
    cfg = replace(cfg, epochs=1, knn_every=0, swa=False, batch_size=plan.batch)
    build = METHODS["cass"].build
    assert build is not None
    method = build(pair.arms, pair.out_dim, params)
    dataset = ShardDataset(read_manifest(data), "train", method.train_transform(size))
    loader = make_loader(dataset, cfg.batch_size, train=True, seed=0, workers=cfg.num_workers)
    accelerator = make_accelerator(plan.device, "auto")
    if accelerator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = pretrain(method, loader, cfg, tmp / "epoch", accelerator)
    record = {
        k: v
        for k, v in asdict(result).items()
        if k in ("wall_s", "images", "images_per_s", "peak_mem_mb", "precision", "device")
    }
    record["steps"] = len(loader)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cass_hpc.bench.gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench/gpu"), help="folder (JSON)")
    parser.add_argument("--budget-s", type=float, default=290.0, help="wall-time budget (290)")
    parser.add_argument(
        "--per-class",
        type=int,
        default=40,
        help="synthetic images per class "
        "of the epoch (4 classes; 70 %% train; default 40: 7 steps)",
    )
    parser.add_argument(
        "--rehearse",
        action="store_true",
        help="run parts 1 and 2 on the CPU at a toy size (about 30 s) to check that the "
        "script works here; the numbers mean nothing",
    )
    args = parser.parse_args(argv)
    if not args.rehearse and not torch.cuda.is_available():
        print(
            "bench-gpu: torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
            "run it on a GPU node, `--rehearse` to check the script on the CPU, or `make bench` "
            "to measure the CPU",
            file=sys.stderr,
        )
        return NO_GPU
    plan = Plan.rehearsal() if args.rehearse else Plan()
    per_class = min(args.per_class, 4) if args.rehearse else args.per_class
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()

    def left() -> float:
        return args.budget_s - (time.perf_counter() - t0)

    main_precision, other = plan.precisions()
    name = REHEARSAL if args.rehearse else torch.cuda.get_device_name()
    print(f"bench-gpu on {name}: {main_precision} first; budget {args.budget_s:.0f} s", flush=True)
    summary: dict[str, Any] = {"device_name": name, "size": plan.size, "parts": {}}
    parts = summary["parts"]
    parts[main_precision] = harness(
        plan,
        args.out / f"bench-{main_precision}.json",
        main_precision,
        ["--variants", "base,auto,channels_last,fused,epoch_reads"],
        left() - 90,
    )
    if left() > 30:
        with tempfile.TemporaryDirectory(prefix="cass-bench-gpu-") as tmp:
            try:
                parts["epoch"] = one_epoch(Path(tmp), per_class, plan)
            except Exception as error:  # noqa: BLE001 - report and go on to the other parts
                print(f"  the epoch failed: {type(error).__name__}: {error}", flush=True)
    if other and left() > 45:
        parts[other] = harness(
            plan, args.out / f"bench-{other}.json", other, ["--variants", ""], left() - 30
        )
    if plan.compile and left() > 60:
        parts["compile"] = harness(
            plan,
            args.out / f"bench-{main_precision}-compile.json",
            main_precision,
            ["--sizes", str(plan.size), "--variants", "auto,compile", "--variants-only"],
            left(),
        )
    summary["implied"] = implied(parts.get(main_precision), parts.get("epoch"), plan.size)
    summary["switches"] = verdicts(parts, StepSpeed.auto(torch.device(plan.device)))
    summary["wall_s"] = time.perf_counter() - t0
    store.write_json(args.out / "summary.json", summary)
    print_summary(summary)
    return 1 if any(part is None for part in parts.values()) or "epoch" not in parts else 0


def implied(bench: dict | None, epoch: dict | None, size: int = 384) -> dict[str, Any]:
    """The brain-MRI pretraining time implied by the step measured at ``size`` px (the
    paper's 384) and by the epoch."""
    out: dict[str, Any] = {"paper_s": PAPER_CASS_S, "paper": hours(PAPER_CASS_S)}
    rows = [r for r in (bench or {}).get("sizes", []) if r["image_size"] == size]
    if rows:
        seconds = implied_pretraining_s(rows[0]["step_images_per_s"])
        out |= {"from_step_s": seconds, "from_step": hours(seconds)}
    if epoch and epoch.get("images_per_s"):
        seconds = implied_pretraining_s(epoch["images_per_s"])
        out |= {"from_epoch_s": seconds, "from_epoch": hours(seconds)}
    return out


SWITCHES = {  # bench variant -> (the switch it turns on, the override that turns it off)
    "channels_last": ("channels_last", "speed.channels_last=false"),
    "fused": ("fused_optimizer", "speed.fused_optimizer=false"),
    "epoch_reads": ("read_every", "speed.read_every=1"),
    "compile": ("compile", "speed.compile=false"),
}
NOISE = 0.03  # a ratio within 3 % of 1 is not a measurable change (PERF.md)


def verdicts(parts: dict[str, Any], auto: StepSpeed) -> dict[str, dict[str, Any]]:
    """Each speed switch's step time over ``base``'s at the variants' size (the compile part is
    measured against ``auto``, run beside it): ``win`` below 1 - NOISE, ``loss`` above 1 +
    NOISE, else ``noise``; and whether ``auto`` (the loop's default here) turns it on."""
    out: dict[str, dict[str, Any]] = {}
    for part in parts.values():
        for row in (part or {}).get("sizes", []) if isinstance(part, dict) else []:
            variants = row.get("variants") or {}
            ref_name = "base" if "base" in variants else "auto"
            ref = variants.get(ref_name, {}).get("step_s")
            for name, v in variants.items():
                if name in SWITCHES and ref and name not in out:
                    ratio = v["step_s"] / ref
                    verdict = (
                        "win" if ratio < 1 - NOISE else "loss" if ratio > 1 + NOISE else "noise"
                    )
                    field = SWITCHES[name][0]
                    on = getattr(auto, field) == (0 if field == "read_every" else True)
                    out[name] = {
                        "ratio": ratio,
                        "against": ref_name,
                        "verdict": verdict,
                        "default": on,
                    }
    return out


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def print_summary(summary: dict) -> None:
    print(f"\nbench-gpu summary ({summary['device_name']}, {summary['wall_s']:.0f} s)")
    if summary["device_name"] == REHEARSAL:
        print("  (a rehearsal: toy size, one step each; the numbers and verdicts mean nothing)")
    for name, part in summary["parts"].items():
        if part is None:
            print(f"  {name}: not measured")
        elif name == "epoch":
            print(
                f"  one CASS epoch at {summary['size']} px ({part['images']} images, "
                f"{part['steps']} steps, {part['precision']}): {part['wall_s']:.1f} s, "
                f"{part['images_per_s']:.1f} images/s, peak memory "
                f"{part['peak_mem_mb'] / 1024:.1f} GiB"
            )
        else:
            for r in part.get("sizes", []):
                if "P1" in r:
                    print(
                        f"  {name} {r['image_size']} px: P1 {_f(r['P1'], '.2f')}  "
                        f"P2 {_f(r['P2'], '.1f')}  P3 {_f(r.get('P3'), '.2f')}  "
                        f"CASS step {r['step_s']['cass']:.3f} s"
                    )
    for name, v in summary.get("switches", {}).items():
        advice = ""
        if v["default"] and v["verdict"] == "loss":
            advice = f"; on by default here: turn it off with {SWITCHES[name][1]} (and tell us)"
        print(
            f"  switch {name}: step x {v['ratio']:.2f} of {v['against']}'s, {v['verdict']}"
            f" ({'on' if v['default'] else 'off'} by default){advice}"
        )
    imp = summary["implied"]
    print(
        f"  brain MRI (5,712 images x 100 epochs): paper {imp['paper']} on an RTX8000; "
        f"implied here {imp.get('from_step', '?')} (measured step), "
        f"{imp.get('from_epoch', '?')} (the short epoch, start-up included)"
    )


if __name__ == "__main__":
    sys.exit(main())
