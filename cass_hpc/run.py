"""Hydra entry point: one job = one grid cell (see conf/config.yaml).

    python -m cass_hpc.run                                  # one cell, defaults
    python -m cass_hpc.run method=supervised arm=vit label_fraction=0.1
    python -m cass_hpc.run -m experiment=demo               # the demo grid via submitit
    python -m cass_hpc.run --help                           # every config group and key

Hydra lives here only; the work is `cass_hpc.cell.run_cell`, which takes plain dataclasses.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from cass_hpc import jobstate, resolvers, store  # noqa: F401 - ${launch_id:} in conf/config.yaml
from cass_hpc.cell import CellSpec, run_cell, run_pretrain_stage
from cass_hpc.data.resplit import check_split_seed
from cass_hpc.device import DEVICES, PRECISIONS, resolve_device, resolve_precision
from cass_hpc.fields import check_types
from cass_hpc.finetune import FinetuneConfig
from cass_hpc.methods import method_entry
from cass_hpc.models import ArmSpec
from cass_hpc.overrides import check_command_line
from cass_hpc.pretrain import PretrainConfig
from cass_hpc.pretrained import go_offline
from cass_hpc.slurm_jobs import cancel_dependents, current_job_id
from cass_hpc.speed import StepSpeed

log = logging.getLogger("cass_hpc")


def spec_from_config(cfg: DictConfig) -> CellSpec:
    """Turn the resolved Hydra config into the plain, typed cell description."""
    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert isinstance(c, dict)
    model = c["model"]
    pretrain, finetune = dict(c["pretrain"]), dict(c["finetune"])
    if c["paper_compat"]:  # the released notebooks' quirks (PAPER.md), for comparison only
        pretrain["paper_compat"] = True
        finetune["class_weights"] = "frequency"
    top = {k: c[k] for k in ("label_fraction", "seed", "image_size", "threads", "split_seed")}
    check_types("", CellSpec, top)
    check_types("model.", CellSpec, {"out_dim": model["out_dim"]})
    check_switches(c)
    check_types("pretrain.", PretrainConfig, pretrain)
    check_types("finetune.", FinetuneConfig, finetune)
    try:
        return _cell_spec(c, model, pretrain, finetune)
    except TypeError as err:  # an unknown key in a config node (e.g. pretrain.epoch=1)
        raise ValueError(f"{err}; see python -m cass_hpc.run --help for the keys") from None


def check_switches(c: dict) -> None:
    """The top-level switches' values (a grid's pre-check: its jobs may run on another machine,
    so whether the device is there is checked where it runs): booleans are booleans, device
    and precision one of their names."""
    switches = {"keep_weights": c["keep_weights"], "paper_compat": c["paper_compat"],
                "dataset.verify": c["dataset"]["verify"]}  # fmt: skip
    for key, value in switches.items():
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")
    if c["device"] not in DEVICES:
        raise ValueError(f"device must be {', '.join(DEVICES)}, got {c['device']!r}")
    if c["precision"] not in PRECISIONS:
        raise ValueError(f"precision must be {', '.join(PRECISIONS)}, got {c['precision']!r}")


def _cell_spec(c: dict, model: dict, pretrain: dict, finetune: dict) -> CellSpec:
    method = c["method"]["name"]
    return CellSpec(
        experiment=c["experiment_name"],
        store_root=Path(to_absolute_path(c["runs_dir"])) / c["experiment_name"],
        dataset_path=Path(to_absolute_path(c["dataset"]["path"])),
        image_size=int(c["image_size"]),
        method=method,
        pretrain=PretrainConfig(**pretrain) if method_entry(method).pretrains else None,
        method_params=dict(c["method"].get("params") or {}),
        arms={a: ArmSpec(**model[a]) for a in ("cnn", "vit")},
        out_dim=int(model["out_dim"]),
        arm=c["arm"],
        label_fraction=float(c["label_fraction"]),
        seed=int(c["seed"]),
        finetune=FinetuneConfig(**finetune),
        device=c["device"],
        precision=c["precision"],
        threads=c["threads"],
        verify_shards=bool(c["dataset"]["verify"]),
        keep_weights=bool(c["keep_weights"]),
        speed=_speed(c.get("speed")),
        split_seed=check_split_seed(c.get("split_seed")),
    )


def _speed(settings: dict | None) -> dict:
    """The ``speed`` switches as given (None = the device's default), checked when the config
    is read so that a grid with a mistyped switch queues nothing."""
    settings = dict(settings or {})
    StepSpeed.configured(torch.device("cpu"), settings)  # ValueError names an unknown switch
    return settings


def _pretrain_stage(spec: CellSpec, overrides: list[str]) -> None:
    """Run the pretraining stage; if it fails, cancel the SLURM jobs of the cells waiting on it
    (they would pend forever). A preemption or time limit (SystemExit) requeues it instead."""
    try:
        run_pretrain_stage(spec, overrides=overrides)
    except Exception:
        if job := current_job_id():
            cancel_dependents(job)
        raise


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    go_offline()  # every stage, wherever it runs (local, SLURM, container): jobs never download
    try:
        overrides = list(HydraConfig.get().overrides.task)
        if cfg.stage not in ("cell", "pretrain"):
            raise ValueError(f"stage must be cell or pretrain, got {cfg.stage!r}")
        if HydraConfig.get().mode == RunMode.RUN:  # it runs here: refuse what cannot run here
            resolve_precision(cfg.precision, resolve_device(cfg.device))  # (a grid's job: there)
        if cfg.stage == "pretrain":  # a grid's first stage (see cass_hpc.plan)
            _pretrain_stage(spec_from_config(cfg), overrides)
            return 0.0
        record = run_cell(spec_from_config(cfg), overrides=overrides)
    except (ValueError, MissingMandatoryValue, store.NoSpaceError) as err:
        if isinstance(err, MissingMandatoryValue):
            key = getattr(err, "full_key", "?")
            err = ValueError(
                f"{key} is not set; pass {key}=... (see python -m cass_hpc.run --help)"
            )
        log.error("error: %s", err)
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # the launcher records the cell as failed, with this message in its log
        if not jobstate.recorded(err):  # refused before any work: no run folder is left
            written = {".hydra", f"{hydra_cfg.job.name}.log"}
            store.remove_unused(Path(hydra_cfg.runtime.output_dir), written)
        raise SystemExit(2) from None  # one line for a user at a terminal, no traceback
    return float(record["metrics"]["macro_f1"])


if __name__ == "__main__":
    try:
        try:  # before Hydra: a mistyped key gets the nearest real one, not Hydra's "+key" advice
            check_command_line(sys.argv[1:], Path(__file__).resolve().parents[1] / "conf")
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        main()
    except KeyboardInterrupt:  # Ctrl-C: the cell's state says so; its checkpoints are kept
        print("interrupted; run the same command to resume", file=sys.stderr)
        raise SystemExit(130) from None
