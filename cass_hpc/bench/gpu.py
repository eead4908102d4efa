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
GPU it says so and exits with status 3.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from cass_hpc import store

PAPER_IMAGES, PAPER_EPOCHS = 5712, 100  # brain-MRI training set, pretraining epochs (CASS §4)
PAPER_CASS_S = 7 * 3600 + 11 * 60  # CASS on brain MRI: 7 h 11 min on one RTX8000 (Table 1)
NO_GPU = 3


def hours(seconds: float) -> str:
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def implied_pretraining_s(images_per_s: float) -> float:
    """Seconds to pretrain on the paper's brain-MRI set (5,712 images x 100 epochs)."""
    if images_per_s <= 0:
        raise ValueError(f"images_per_s must be > 0, got {images_per_s}")
    return PAPER_IMAGES * PAPER_EPOCHS / images_per_s


def harness(out: Path, precision: str, extra: list[str], timeout_s: float) -> dict | None:
    """One harness process; its JSON record, or None (with the reason printed)."""
    command = [
        sys.executable,
        "-m",
        "cass_hpc.bench",
        "--device",
        "cuda",
        "--precision",
        precision,
        "--pair",
        "paper_pair",
        "--batch",
        "16",
        "--out",
        str(out),
        *extra,
    ]
    print("$", " ".join(command[1:]), flush=True)
    try:
        proc = subprocess.run(command, timeout=max(10.0, timeout_s))
    except subprocess.TimeoutExpired:
        print(f"  stopped after {timeout_s:.0f} s (the check's budget)", flush=True)
        return None
    if proc.returncode != 0:
        print(f"  failed with status {proc.returncode}", flush=True)
        return None
    return store.read_json(out)


def one_epoch(
    tmp: Path, per_class: int, pair_name: str = "paper_pair", size: int = 384, device: str = "cuda"
) -> dict[str, Any]:
    """One CASS epoch of the paper pair at 384 px through the real loop; its record."""
    from cass_hpc.bench.harness import load_pair, method_settings, pack_synthetic
    from cass_hpc.data.dataset import ShardDataset
    from cass_hpc.data.loader import make_loader
    from cass_hpc.data.shards.reader import read_manifest
    from cass_hpc.device import make_accelerator
    from cass_hpc.methods import METHODS
    from cass_hpc.pretrain import pretrain

    data = pack_synthetic(tmp / f"shapes{size}", size, per_class)
    pair = load_pair(pair_name, size)
    params, cfg = method_settings("cass")
    cfg = replace(cfg, epochs=1, knn_every=0, swa=False, batch_size=16)
    build = METHODS["cass"].build
    assert build is not None
    method = build(pair.arms, pair.out_dim, params)
    dataset = ShardDataset(read_manifest(data), "train", method.train_transform(size))
    loader = make_loader(dataset, cfg.batch_size, train=True, seed=0, workers=cfg.num_workers)
    accelerator = make_accelerator(device, "auto")
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
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "bench-gpu: torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
            "run it on a GPU node, or `make bench` for the CPU",
            file=sys.stderr,
        )
        return NO_GPU
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()

    def left() -> float:
        return args.budget_s - (time.perf_counter() - t0)

    main_precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    other = "fp16" if main_precision == "bf16" else None
    print(
        f"bench-gpu on {torch.cuda.get_device_name()}: {main_precision} first; "
        f"budget {args.budget_s:.0f} s",
        flush=True,
    )
    summary: dict[str, Any] = {"device_name": torch.cuda.get_device_name(), "parts": {}}
    parts = summary["parts"]
    parts[main_precision] = harness(
        args.out / f"bench-{main_precision}.json",
        main_precision,
        ["--variants", "base,auto,channels_last,fused,epoch_reads"],
        left() - 90,
    )
    if left() > 30:
        with tempfile.TemporaryDirectory(prefix="cass-bench-gpu-") as tmp:
            try:
                parts["epoch"] = one_epoch(Path(tmp), args.per_class)
            except Exception as error:  # noqa: BLE001 - report and go on to the other parts
                print(f"  the epoch failed: {type(error).__name__}: {error}", flush=True)
    if other and left() > 45:
        parts[other] = harness(
            args.out / f"bench-{other}.json", other, ["--variants", ""], left() - 30
        )
    if left() > 60:
        parts["compile"] = harness(
            args.out / f"bench-{main_precision}-compile.json",
            main_precision,
            ["--sizes", "384", "--variants", "auto,compile", "--variants-only"],
            left(),
        )
    summary["implied"] = implied(parts.get(main_precision), parts.get("epoch"))
    summary["wall_s"] = time.perf_counter() - t0
    store.write_json(args.out / "summary.json", summary)
    print_summary(summary)
    return 1 if any(part is None for part in parts.values()) or "epoch" not in parts else 0


def implied(bench: dict | None, epoch: dict | None) -> dict[str, Any]:
    """The brain-MRI pretraining time implied by the measured 384-px step and by the epoch."""
    out: dict[str, Any] = {"paper_s": PAPER_CASS_S, "paper": hours(PAPER_CASS_S)}
    rows = [r for r in (bench or {}).get("sizes", []) if r["image_size"] == 384]
    if rows:
        seconds = implied_pretraining_s(rows[0]["step_images_per_s"])
        out |= {"from_step_s": seconds, "from_step": hours(seconds)}
    if epoch and epoch.get("images_per_s"):
        seconds = implied_pretraining_s(epoch["images_per_s"])
        out |= {"from_epoch_s": seconds, "from_epoch": hours(seconds)}
    return out


def print_summary(summary: dict) -> None:
    print(f"\nbench-gpu summary ({summary['device_name']}, {summary['wall_s']:.0f} s)")
    for name, part in summary["parts"].items():
        if part is None:
            print(f"  {name}: not measured")
        elif name == "epoch":
            print(
                f"  one paper-pair CASS epoch at 384 px ({part['images']} images, "
                f"{part['steps']} steps, {part['precision']}): {part['wall_s']:.1f} s, "
                f"{part['images_per_s']:.1f} images/s, peak GPU memory "
                f"{part['peak_mem_mb'] / 1024:.1f} GiB"
            )
        else:
            for r in part.get("sizes", []):
                if "P1" in r:
                    print(
                        f"  {name} {r['image_size']} px: P1 {r['P1']:.2f}  P2 {r['P2']:.1f}  "
                        f"P3 {r['P3']:.2f}  CASS step {r['step_s']['cass']:.3f} s"
                    )
    imp = summary["implied"]
    print(
        f"  brain MRI (5,712 images x 100 epochs): paper {imp['paper']} on an RTX8000; "
        f"implied here {imp.get('from_step', '?')} (measured step), "
        f"{imp.get('from_epoch', '?')} (the short epoch, start-up included)"
    )


if __name__ == "__main__":
    sys.exit(main())
