"""One grid cell: (shared) pretraining stage → fine-tuning of one arm → results.json.

Plain typed arguments (no Hydra) so it runs and tests the same under any launcher. The
pretraining of a (dataset, method, backbones, seed) is stored under its own key and shared by
every label fraction and arm that needs it. A grid's launcher runs it first, as its own stage
(:func:`run_pretrain_stage`, see ``plan.py``); a cell started alone computes it itself, under a
lock. A cell whose results.json is complete (:func:`is_done`) is skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from cass_hpc import jobstate, snapshot, store
from cass_hpc.data.loader import make_loader, mix_seed
from cass_hpc.data.resplit import split_dataset, split_labels, write_split_file
from cass_hpc.data.shards import Manifest, read_manifest
from cass_hpc.data.splits import label_fraction_indices, label_fraction_notice
from cass_hpc.data.transforms import eval_transform, paper_augmentation
from cass_hpc.device import make_accelerator
from cass_hpc.finetune import FinetuneConfig, finetune
from cass_hpc.jobstate import is_done
from cass_hpc.knn import start_scores, validation_monitor
from cass_hpc.methods import METHODS, method_entry
from cass_hpc.models import ArmSpec, arm_identity, build_arm
from cass_hpc.pretrain import PretrainConfig, pretrain
from cass_hpc.pretrained import OFFLINE_ENV, check_starting_weights, starting_records
from cass_hpc.speed import StepSpeed

log = logging.getLogger(__name__)
RESULTS_SCHEMA = "cass-hpc-results/1"
# beside results.json: the kept weights (timm state dict) and the val/test probabilities
CELL_FILES = {"weights": "model.pt", "predictions": "predictions.npz"}
PRETRAIN_NETS = "nets.json"  # beside a pretraining's <arm>.pt: which timm nets they are


@dataclass(frozen=True)
class CellSpec:
    """Everything that defines one grid cell (built from Hydra's config by ``run.py``)."""

    experiment: str  # names the store: runs/<experiment>
    store_root: Path
    dataset_path: Path  # a packed dataset (python -m preprocess ...)
    image_size: int  # input size of both nets
    method: str  # cass | dino | supervised
    pretrain: PretrainConfig | None  # None: no pretraining stage (supervised)
    method_params: dict[str, Any]  # the method's own settings (CASSConfig, DINOConfig)
    arms: dict[str, ArmSpec]  # the backbone pair, by arm name (cnn, vit)
    out_dim: int  # width of each net's head during pretraining (paper: 1000 logits)
    arm: str  # which arm this cell fine-tunes
    label_fraction: float  # of the training split's labels
    seed: int
    finetune: FinetuneConfig
    device: str = "auto"  # auto | cpu | cuda
    precision: str = (
        "auto"  # auto (bf16 on Ampere+, fp16 on older GPUs, fp32 on CPU) | no | fp16 | bf16
    )
    threads: int | None = None  # torch CPU threads; None = torch's default
    verify_shards: bool = True  # hash every shard against the manifest before use
    keep_weights: bool = True  # keep the fine-tuned weights (model.pt: maps, export); not in keys
    split_seed: int | None = None  # None: the packed split; an int: re-drawn (data.resplit)
    speed: dict[str, Any] = field(default_factory=dict)  # pretraining step switches; not in keys

    def __post_init__(self) -> None:  # what a config can get wrong, before any data is read
        if self.arm not in self.arms:
            raise ValueError(f"arm {self.arm!r} is not in the backbone pair {sorted(self.arms)}")
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        if self.image_size < 16 or self.out_dim < 1:
            raise ValueError(
                f"image_size must be >= 16 and model.out_dim >= 1, got {self.image_size}, "
                f"{self.out_dim}"
            )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 (or null), got {self.threads}")


def dataset_identity(manifest: Manifest) -> dict[str, Any]:
    """What identifies the data in a key: its content (shard checksums), not its path."""
    return {"name": manifest.name, "shards": sorted(s.sha256 for s in manifest.shards)}


def _split_entry(spec: CellSpec) -> dict[str, int]:
    """A key's split entry: none for the packed split (stores made before split_seed stay valid)."""
    return {} if spec.split_seed is None else {"split_seed": spec.split_seed}


def pretrained_arms(spec: CellSpec) -> dict[str, ArmSpec]:
    """The backbones one pretraining run trains: the pair (CASS) or this cell's arm (DINO)."""
    if method_entry(spec.method).per_arm:
        return {spec.arm: spec.arms[spec.arm]}
    return dict(spec.arms)


def pretrain_key(spec: CellSpec, manifest: Manifest) -> str:
    return store.stable_key(
        {
            "data": dataset_identity(manifest),
            "image_size": spec.image_size,
            "method": spec.method,
            "method_params": spec.method_params,
            "pretrain": dataclasses.asdict(spec.pretrain) if spec.pretrain else None,
            "arms": {a: arm_identity(a, s) for a, s in sorted(pretrained_arms(spec).items())},
            "out_dim": spec.out_dim,
            "seed": spec.seed,
            "precision": spec.precision,
            **_split_entry(spec),
        }
    )


def cell_key(spec: CellSpec, manifest: Manifest) -> str:
    return store.stable_key(
        {
            "pretrain": pretrain_key(spec, manifest) if spec.pretrain else None,
            "data": dataset_identity(manifest),
            "image_size": spec.image_size,
            "method": spec.method,
            "arm": spec.arm,
            "arm_spec": arm_identity(spec.arm, spec.arms[spec.arm]),
            "label_fraction": spec.label_fraction,
            "seed": spec.seed,
            "finetune": dataclasses.asdict(spec.finetune),
            "precision": spec.precision,
            **_split_entry(spec),
        }
    )


def cell_dir(spec: CellSpec, key: str) -> Path:
    split = "" if spec.split_seed is None else f"-ss{spec.split_seed}"  # a re-drawn split
    name = f"{spec.method}-{spec.arm}-lf{spec.label_fraction:g}-s{spec.seed}{split}-{key}"
    return spec.store_root / "cells" / name


def pretrain_dir(spec: CellSpec, key: str) -> Path:
    arms = pretrained_arms(spec)
    return spec.store_root / "pretrain" / f"{spec.method}-{'-'.join(sorted(arms))}-{key}"


def check_cell(spec: CellSpec, manifest: Manifest) -> np.ndarray:
    """Everything about a cell that can be wrong before it runs; returns its labelled subset
    (indices into the training split). Raises ValueError naming the value and what to do."""
    entry = method_entry(spec.method)
    entry.check(spec.method, spec.arm, spec.method_params, spec.arms[spec.arm])
    built = pretrained_arms(spec) if spec.pretrain is not None else {spec.arm: spec.arms[spec.arm]}
    entry.check_build(spec.method, built, spec.out_dim, spec.method_params)  # on the meta device
    # the starting weights are on this machine, offline (every missing one named at once)
    check_starting_weights(starting_arms(spec))
    labels = split_labels(manifest, "train", spec.split_seed)
    return label_fraction_indices(labels, spec.label_fraction, spec.seed, manifest.num_classes)


def starting_arms(spec: CellSpec) -> dict[str, ArmSpec]:
    """The arms whose starting weights this cell reads: those it pretrains, or the one it
    fine-tunes from scratch."""
    return (
        dict(sorted(pretrained_arms(spec).items()))
        if spec.pretrain is not None
        else {spec.arm: spec.arms[spec.arm]}
    )


def run_pretraining(
    spec: CellSpec,
    manifest: Manifest,
    accelerator: Accelerator,
    *,
    lock: bool = True,
    report: bool = True,
) -> tuple[Path, dict]:
    """Return the pretraining artifact dir (computing it once) and its record.

    ``lock``: hold a lock while computing, so that cells started side by side without a stage
    plan (``python -m cass_hpc.run`` by hand) compute it once. A grid's pretraining stage needs
    none: it is the one job for its key. ``report``: record the computation's state (running,
    done, failed, interrupted) in the pretraining's ``state.json`` for ``status``, as a cell
    does; a grid's pretraining stage reports around the whole stage instead."""
    assert spec.pretrain is not None
    key = pretrain_key(spec, manifest)
    out_dir = pretrain_dir(spec, key)
    store.check_folder(out_dir)
    done = out_dir / "pretrain.json"
    if not is_done(done):
        with store.exclusive(out_dir) if lock else contextlib.nullcontext():
            if not is_done(done):  # another job may have finished it while we waited
                with jobstate.reporting(out_dir) if report else contextlib.nullcontext():
                    _pretrain(spec, manifest, accelerator, out_dir)
    else:
        log.info("pretraining %s already done: reusing %s", key, out_dir)
    arms = pretrained_arms(spec)
    nets = store.read_json(out_dir / PRETRAIN_NETS) if (out_dir / PRETRAIN_NETS).exists() else {}
    init = {"init": nets["init"]} if "init" in nets else {}  # stores made before it was recorded
    return out_dir, {"key": key, "arms": sorted(arms), **init, **store.read_json(done)}


def _pretrain(spec: CellSpec, manifest: Manifest, accelerator: Accelerator, out_dir: Path) -> None:
    assert spec.pretrain is not None
    set_seed(spec.seed)
    build = METHODS[spec.method].build
    assert build is not None
    method = build(pretrained_arms(spec), spec.out_dim, spec.method_params)
    write_split_file(manifest, spec.split_seed, spec.store_root)  # a re-drawn split is recorded
    transform = method.train_transform(spec.image_size)
    data = split_dataset(manifest, "train", transform, spec.split_seed)
    loader = make_loader(
        data, spec.pretrain.batch_size, train=True, seed=spec.seed,
        workers=spec.pretrain.num_workers,
    )  # fmt: skip
    knn = None
    if spec.pretrain.knn_every:  # the health monitor sees the validation split, unaugmented
        val = split_dataset(manifest, "val", eval_transform(spec.image_size), spec.split_seed)
        knn = validation_monitor(val, spec.seed, spec.pretrain.knn_k, manifest.classes)
    log.info("pretraining %s on %d images -> %s", spec.method, len(data), out_dir)
    nets = {
        "method": spec.method, "dataset": manifest.name, "seed": spec.seed,
        "split_seed": spec.split_seed,
        "image_size": spec.image_size,
        "arms": {a: {"name": s.name, "kwargs": dict(s.kwargs)}
                 for a, s in pretrained_arms(spec).items()},
        "init": starting_records(starting_arms(spec)),  # where each net started: init, file, sha256
    }  # fmt: skip
    store.write_json(out_dir / PRETRAIN_NETS, nets)  # for cass_hpc.export
    speed = StepSpeed.configured(accelerator.device, spec.speed)
    pretrain(method, loader, spec.pretrain, out_dir, accelerator, knn, speed)


def run_cell(spec: CellSpec, overrides: list[str] | None = None) -> dict[str, Any]:
    """Run one cell end to end and return its results (also written to results.json).

    Its job state (running / done / failed / interrupted, attempt, job id, log) goes to
    ``state.json`` beside the results, with ``overrides`` (the command-line overrides that made
    the cell) if given.
    """
    method_entry(spec.method)  # an unknown method fails before the data is read
    _set_threads(spec)
    manifest = read_manifest(spec.dataset_path, verify=spec.verify_shards)
    # what can be wrong first (the starting weights the key hashes; a class too small for the
    # fraction), so that it fails before any pretraining
    indices = check_cell(spec, manifest)
    key = cell_key(spec, manifest)
    results_path = cell_dir(spec, key) / "results.json"
    store.check_folder(results_path.parent)  # a file where its folder belongs: one line
    if why := jobstate.unusable(results_path):
        log.warning("%s: computing the cell again", why)
    elif results_path.exists():  # usable: done
        log.info("cell %s already done: %s", key, results_path)
        jobstate.add_alias(results_path.parent, overrides)
        return store.read_json(results_path)
    with _claim(results_path.parent):
        if jobstate.is_done(results_path):  # another grid computed it while this one waited
            log.info("cell %s done meanwhile by another job: %s", key, results_path)
            return store.read_json(results_path)
        with jobstate.reporting(results_path.parent, overrides):
            return _run(spec, manifest, key, results_path, indices)


def _claim(directory: Path) -> contextlib.AbstractContextManager:
    """Off SLURM, a stage being computed is claimed by a lock (released when its process ends,
    so a dead claim is no claim): a second grid started beside the first waits, then finds the
    stage done. On SLURM the launcher's plan submits each stage once (dag_launcher.in_flight)."""
    if os.environ.get("SLURM_JOB_ID"):
        return contextlib.nullcontext()
    return store.exclusive(directory)


def run_pretrain_stage(spec: CellSpec, overrides: list[str] | None = None) -> dict[str, Any]:
    """A grid's pretraining stage (``stage=pretrain``): compute the pretraining ``spec`` needs,
    report its state in its directory (``state.json``), and return its record."""
    if spec.pretrain is None:
        raise ValueError(f"method {spec.method!r} has no pretraining stage")
    _set_threads(spec)
    manifest = read_manifest(spec.dataset_path, verify=spec.verify_shards)
    directory = pretrain_dir(spec, pretrain_key(spec, manifest))
    store.check_folder(directory)
    if is_done(directory / "pretrain.json"):
        log.info("pretraining already done: %s", directory)
        return store.read_json(directory / "pretrain.json")
    with jobstate.reporting(directory, overrides):
        accelerator = make_accelerator(spec.device, spec.precision)
        off_slurm = not os.environ.get("SLURM_JOB_ID")  # claimed by a lock, as cells are
        return run_pretraining(spec, manifest, accelerator, lock=off_slurm, report=False)[1]


def _set_threads(spec: CellSpec) -> None:
    # threads: as configured, else the cores SLURM gave the job (torch would take every core of
    # the node and, with other jobs beside it, oversubscribe them many times over)
    threads = spec.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0"))
    if threads:
        torch.set_num_threads(threads)


def _run(
    spec: CellSpec, manifest: Manifest, key: str, results_path: Path, indices: np.ndarray
) -> dict[str, Any]:
    if spec.image_size != manifest.image_size:
        log.warning(
            "images stored at %d px are resized to image_size=%d px for this run",
            manifest.image_size, spec.image_size,
        )  # fmt: skip
    accelerator = make_accelerator(spec.device, spec.precision)
    pretrain_record = None
    warnings: list[str] = []
    arm_spec = spec.arms[spec.arm]
    if spec.pretrain is not None:
        artifact_dir, pretrain_record = run_pretraining(spec, manifest, accelerator)
        pretrained = str(artifact_dir / f"{spec.arm}.pt")  # fine-tuning starts from it
        arm_spec = dataclasses.replace(arm_spec, pretrained=pretrained, init="local")
        collapsed = pretrain_record.get("collapsed", {})  # only the net this cell fine-tunes
        warnings = [collapsed[spec.arm]] if spec.arm in collapsed else []
        for warning in warnings:
            log.warning("fine-tuning from a collapsed pretraining: %s", warning)
    labels = split_labels(manifest, "train", spec.split_seed)
    if notice := label_fraction_notice(labels, spec.label_fraction, indices):
        warnings.append(notice)  # logged by label_fraction_indices

    set_seed(spec.seed)
    net = build_arm(arm_spec, num_classes=manifest.num_classes, arm=spec.arm)
    split_seed, size = spec.split_seed, spec.image_size
    split_path = write_split_file(manifest, split_seed, spec.store_root)  # None: packed split
    train = split_dataset(manifest, "train", paper_augmentation(size), split_seed, indices)
    val = split_dataset(manifest, "val", eval_transform(size), split_seed)
    test = split_dataset(manifest, "test", eval_transform(size), split_seed)
    knn_start = None  # a pretrained cell's start is its pretraining's k-NN at epoch 0
    if spec.pretrain is None:  # the k-NN of the very weights fine-tuning starts from
        knn_start = start_scores(val, {spec.arm: net}, accelerator, spec.seed, manifest.classes)
    cfg, workers = spec.finetune, spec.finetune.num_workers
    seed = mix_seed(spec.seed, 1)  # fine-tuning's own augmentation and order draws
    log.info(
        "fine-tuning %s/%s at label fraction %g: %d train, %d val, %d test images",
        spec.method,
        spec.arm,
        spec.label_fraction,
        len(train),
        len(val),
        len(test),
    )
    result = finetune(
        net,
        make_loader(train, cfg.batch_size, train=True, seed=seed, workers=workers),
        make_loader(val, cfg.batch_size, train=False, seed=seed, workers=workers),
        make_loader(test, cfg.batch_size, train=False, seed=seed, workers=workers),
        num_classes=manifest.num_classes,
        train_labels=train.labels,
        cfg=cfg,
        accelerator=accelerator,
        checkpoint=results_path.parent / "finetune_checkpoint.pt",
        class_names=list(manifest.classes),
    )
    ignored = [c for c, w in zip(manifest.classes, result.class_weights, strict=True) if w == 0]
    if ignored:  # the paper's min-max weights zero the rarest class: say so where users look
        warnings.append(
            f"class weight 0 for {', '.join(ignored)} (finetune.class_weights="
            f"{cfg.class_weights}): the fine-tuning loss ignored it; class_weights=inverse does not"
        )
    record = {
        "schema": RESULTS_SCHEMA,
        "key": key,
        "experiment": spec.experiment,
        "dataset": manifest.name,
        "synthetic": manifest.synthetic,
        "classes": list(manifest.classes),
        "multilabel": manifest.multilabel,
        "threshold": cfg.threshold if manifest.multilabel else None,  # sigmoid > it: a label
        "method": spec.method,
        "arm": spec.arm,
        "backbone": spec.arms[spec.arm].name,
        "label_fraction": spec.label_fraction,
        "seed": spec.seed,
        "metrics": result.metrics,
        "val_metrics": result.val_metrics,  # the same weights on val: how to choose an arm
        "per_class": result.per_class,
        "finetune": result.record(),
        "pretrain": pretrain_record,
        # no pretraining (supervised): {arm: k-NN score of the weights fine-tuning started from,
        # "chance": 1 / classes}; null for a pretrained cell (see pretrain.knn at epoch 0)
        "knn_start": knn_start,
        "warnings": warnings,
        "precision": accelerator.mixed_precision,
        "device": str(accelerator.device),
        "dataset_path": str(Path(spec.dataset_path).expanduser().resolve()),
        "image_size": spec.image_size,
        "backbone_kwargs": dict(spec.arms[spec.arm].kwargs),
        "init": starting_records(starting_arms(spec)),  # per arm: init, file, starting sha256
        "environment": {k: os.environ.get(k) for k in OFFLINE_ENV},  # the hub was off
        "split_seed": spec.split_seed,  # None: the packed split
        "split_file": None if split_path is None else str(split_path),
        "files": {k: v for k, v in CELL_FILES.items() if spec.keep_weights or k != "weights"},
        "code": snapshot.code_version(),  # git commit + dirty flag of the code that ran
        "libraries": snapshot.library_versions(),  # torch, timm, lightly, … versions
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    # the kept weights (plain timm state dict) and every image's probabilities, before
    # results.json, which marks the cell done
    if spec.keep_weights:
        weights = {name: tensor.cpu() for name, tensor in net.net.state_dict().items()}
        store.torch_save(results_path.parent / CELL_FILES["weights"], weights)
    store.write_npz(results_path.parent / CELL_FILES["predictions"], result.predictions)
    store.write_json(results_path, record)
    (results_path.parent / "finetune_checkpoint.pt").unlink(missing_ok=True)  # done: not needed
    log.info("cell %s done: %s -> %s", key, result.metrics, results_path)
    return record
