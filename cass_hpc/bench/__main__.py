"""``python -m cass_hpc.bench``: how fast is CASS here, against DINO, its loader and the machine."""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from cass_hpc import store
from cass_hpc.bench import harness
from cass_hpc.device import make_accelerator
from cass_hpc.speed import VARIANTS, StepSpeed

DESCRIPTION = """\
Measure the CASS pretraining step on this machine, in one process, side by side:

  P1  CASS step time / (DINO-CNN step + DINO-ViT step): the paper's time claim (Table 1: CASS
      pretrains in 31 % of DINO's time; DINO trains each net alone, with its paper head of
      65,536 prototypes and 2 global + 6 local crops). Same pair, batch, size, precision and
      speed settings on every side; < 1 means CASS is faster.
  P2  images/s the shard loader delivers (the real make_loader, --workers, the CASS
      augmentation) / images/s the CASS step consumes; >= 1 means the loader keeps up.
  P3  achieved FLOP/s of the CASS step (torch.utils.flop_counter) / the matmul ceiling
      measured on the same device in the same run (best square matmul, the step's dtype).

Also the CASS step under each speed variant (--variants, at --variant-size): base (all off,
a host read per step: the loop before issue 15), auto (the loop's default), base + one switch.
Times are medians of --repeats interleaved steps after --warmup steps. CPU by default; on a GPU
the same command measures the GPU (defaults in brackets: CPU / GPU).
"""
CPU_DEFAULTS = {
    "pair": "demo_pair",
    "sizes": "64,224",
    "batch": 8,
    "warmup": 2,  # the first CPU steps build oneDNN kernels: seconds
    "repeats": 3,
    "variants": "base,auto,channels_last",  # PERF.md: the others within noise on a CPU
    "matmul": 2048,
}
GPU_DEFAULTS = {
    "pair": "paper_pair",
    "sizes": "224,384",
    "batch": 16,
    "warmup": 3,
    "repeats": 10,
    "variants": ",".join(VARIANTS),
    "matmul": 8192,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cass_hpc.bench",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    add("--precision", default="auto", help="auto | no | bf16 | fp16 (default: auto, as a cell)")
    add("--pair", help="backbone pair, conf/model/<pair>.yaml [demo_pair / paper_pair]")
    add("--sizes", help="image sizes in px, comma-separated [64,224 / 224,384]")
    add("--batch", type=int, help="images per step, every method [8 / 16 (the paper's)]")
    add("--warmup", type=int, help="untimed steps of each method first [2 / 3]")
    add("--repeats", type=int, help="timed steps of each method (median) [3 / 10]")
    add("--speed", default="auto", choices=VARIANTS, help="speed switches of P1-P3 (auto)")
    add(
        "--variants",
        help="speed variants of the CASS step, comma-separated; '' = none "
        f"[{CPU_DEFAULTS['variants']} / all]",
    )
    add("--variants-only", action="store_true", help="measure only the variants (no P1-P3)")
    add("--variant-size", type=int, help="image size of the variants [the largest of --sizes]")
    add("--workers", type=int, help="loader workers for P2 [pretrain.num_workers of conf/]")
    add("--data", type=Path, help="a packed dataset for P2 [synthetic shapes packed per size]")
    add("--matmul", type=int, help="side of the ceiling's square matmul [2048 / 8192]")
    add("--dino-out-dim", type=int, help="DINO prototypes, replacing the paper's 65,536 (tests)")
    add("--out", type=Path, help="JSON file [runs/bench/<device>-<precision>.json]")
    return parser.parse_args(argv)


def _defaults(args: argparse.Namespace, device: torch.device) -> argparse.Namespace:
    for key, value in (GPU_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.size_list = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    args.variant_list = [v for v in str(args.variants).split(",") if v.strip()]
    for value, what in (
        (args.batch, "--batch"),
        (args.repeats, "--repeats"),
        (args.matmul, "--matmul"),
    ):
        if value < 1:
            raise ValueError(f"{what} must be >= 1, got {value}")
    if not args.size_list or min(args.size_list) < 16:
        raise ValueError(f"--sizes must list image sizes >= 16 px, got {args.sizes!r}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    if args.batch < 2:
        raise ValueError(f"--batch must be >= 2 (BatchNorm in training mode), got {args.batch}")
    for v in args.variant_list:
        StepSpeed.variant(v, device)  # ValueError naming the known ones
    args.variant_size = args.variant_size or max(args.size_list)
    if args.workers is None:
        args.workers = int(harness.method_settings("cass")[1].num_workers)
    return args


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def measure_size(size: int, args: argparse.Namespace, accelerator: Any, data: Path) -> dict:
    """P1, P2, P3 (and the speed variants at ``args.variant_size``) at one image size."""
    device = accelerator.device
    pair = harness.load_pair(args.pair, size)
    speed = StepSpeed.variant(args.speed, device)
    row: dict[str, Any] = {"image_size": size}

    def runner(method: str, arms: list[str], step_speed: StepSpeed) -> harness.StepRunner:
        return harness.build_runner(
            method, pair, arms, size, args.batch, accelerator, step_speed, args.dino_out_dim
        )

    if not args.variants_only:
        row |= measure_p(size, args, accelerator, data, runner, speed)
    if args.variant_list and size == args.variant_size:
        variants = {
            v: runner("cass", ["cnn", "vit"], StepSpeed.variant(v, device))
            for v in args.variant_list
        }
        v_s, v_warm = harness.time_interleaved(variants, args.warmup, args.repeats, device)
        row["variants"] = {v: {"step_s": v_s[v], "warmup_s": v_warm[v]} for v in v_s}
        del variants
        _free(device)
    return row


def measure_p(
    size: int,
    args: argparse.Namespace,
    accelerator: Any,
    data: Path,
    runner: Any,
    speed: StepSpeed,
) -> dict[str, Any]:
    """P1, P2 and P3 at one size (``DESCRIPTION``)."""
    device = accelerator.device
    runners = {
        "cass": runner("cass", ["cnn", "vit"], speed),
        "dino_cnn": runner("dino", ["cnn"], speed),
        "dino_vit": runner("dino", ["vit"], speed),
    }
    step_s, _ = harness.time_interleaved(runners, args.warmup, args.repeats, device)
    cass = runners["cass"]
    try:
        flops: int | None = harness.count_flops(cass)
    except Exception as error:  # noqa: BLE001 - P3 is then not measured; P1, P2 still are
        print(f"flop counting failed ({type(error).__name__}: {error}); no P3", file=sys.stderr)
        flops = None
    transform = cass.method.train_transform(size)
    del runners
    _free(device)
    ceiling = harness.matmul_ceiling(
        device, harness.ceiling_dtype(accelerator.mixed_precision), args.matmul
    )
    loader = harness.loader_rate(data, transform, args.batch, args.workers, args.repeats)
    step_rate = args.batch / step_s["cass"]
    row = {
        "step_s": step_s,
        "P1": step_s["cass"] / (step_s["dino_cnn"] + step_s["dino_vit"]),
        "loader_images_per_s": loader,
        "step_images_per_s": step_rate,
        "P2": loader / step_rate,
        "flop_per_step": flops,
        "achieved_flop_per_s": flops / step_s["cass"] if flops else None,
        "matmul_ceiling_flop_per_s": ceiling,
        "P3": flops / step_s["cass"] / ceiling if flops else None,
    }
    del cass
    _free(device)
    return row


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def print_tables(record: dict, console: Console) -> None:
    console.print(
        f"{record['device_name']} ({record['device']}, {record['threads']} threads), "
        f"torch {record['torch']}, precision {record['precision']}, "
        f"{record['pair']}, batch {record['batch']}, median of {record['repeats']} "
        f"steps after {record['warmup']}, speed {record['speed']}"
    )
    rows = [r for r in record["sizes"] if "P1" in r]
    if rows:
        console.print(_p_table(rows))
    for r in record["sizes"]:
        if "variants" in r:
            console.print(_variant_table(r))


def _p_table(rows: list[dict]) -> Table:
    table = Table(title="CASS vs DINO (P1), loader (P2), machine (P3)")
    table.add_column("")
    for r in rows:
        table.add_column(f"{r['image_size']} px", justify="right")

    def line(label: str, fmt: str, get: Any) -> None:
        values = []
        for r in rows:
            try:
                values.append(fmt.format(get(r)))
            except TypeError:  # not measured (None)
                values.append("-")
        table.add_row(label, *values)

    line("CASS step (s)", "{:.3f}", lambda r: r["step_s"]["cass"])
    line("DINO-CNN step (s)", "{:.3f}", lambda r: r["step_s"]["dino_cnn"])
    line("DINO-ViT step (s)", "{:.3f}", lambda r: r["step_s"]["dino_vit"])
    line("[bold]P1[/] CASS / (DINO-CNN + DINO-ViT)", "[bold]{:.2f}[/]", lambda r: r["P1"])
    line("loader (images/s)", "{:,.0f}", lambda r: r["loader_images_per_s"])
    line("CASS step (images/s)", "{:,.1f}", lambda r: r["step_images_per_s"])
    line("[bold]P2[/] loader / step", "[bold]{:.1f}[/]", lambda r: r["P2"])
    line("CASS step (GFLOP)", "{:,.1f}", lambda r: r["flop_per_step"] / 1e9)
    line("achieved (GFLOP/s)", "{:,.1f}", lambda r: r["achieved_flop_per_s"] / 1e9)
    line("matmul ceiling (GFLOP/s)", "{:,.1f}", lambda r: r["matmul_ceiling_flop_per_s"] / 1e9)
    line("[bold]P3[/] achieved / ceiling", "[bold]{:.2f}[/]", lambda r: r["P3"])
    return table


def _variant_table(r: dict) -> Table:
    vt = Table(title=f"CASS step by speed variant, {r['image_size']} px (speed.py)")
    for col in ("variant", "step (s)", "vs base", "warm-up (s)"):
        vt.add_column(col, justify="left" if col == "variant" else "right")
    base = r["variants"].get("base", {}).get("step_s")
    for name, v in r["variants"].items():
        ratio = f"{v['step_s'] / base:.2f}" if base else "-"
        vt.add_row(name, f"{v['step_s']:.3f}", ratio, f"{v['warmup_s']:.1f}")
    vt.caption = (
        "medians of a few steps: on a busy machine gaps up to 20 % are noise (PERF.md); "
        "trust a gap seen in several runs"
    )
    return vt


def run(argv: list[str] | None = None) -> dict:
    """Measure, print the tables, write the JSON; return the record."""
    args = parse_args(argv)
    for name in (args.variants or "").split(","):  # before the (slow) accelerator start-up
        if name.strip() and name.strip() not in VARIANTS:
            raise ValueError(f"unknown speed variant {name!r}; choose from {', '.join(VARIANTS)}")
    accelerator = make_accelerator(args.device, args.precision)
    device = accelerator.device
    args = _defaults(args, device)
    console = Console()
    record: dict[str, Any] = {
        "device": device.type,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "precision": accelerator.mixed_precision,
        "pair": args.pair,
        "batch": args.batch,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "workers": args.workers,
        "speed": args.speed,
        "speed_switches": asdict(StepSpeed.variant(args.speed, device)),
        "dino_out_dim": args.dino_out_dim or harness.method_settings("dino")[0]["out_dim"],
        "sizes": [],
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cass-bench-") as tmp:
        for size in args.size_list:
            with console.status(f"measuring {size} px ..."):
                data = args.data or harness.pack_synthetic(Path(tmp) / f"shapes{size}", size, 24)
                record["sizes"].append(measure_size(size, args, accelerator, data))
    record["wall_s"] = time.perf_counter() - t0
    print_tables(record, console)
    out = args.out or Path("runs") / "bench" / f"{device.type}-{accelerator.mixed_precision}.json"
    store.write_json(out, record)
    console.print(f"{record['wall_s']:.0f} s; JSON: {out}")
    return record


def main(argv: list[str] | None = None) -> int:
    try:
        run(argv)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
