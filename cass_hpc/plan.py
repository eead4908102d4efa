"""A grid as a DAG of stages: the distinct pretrainings, then each cell after its own.

A multirun's cells are plain `CellSpec`s. Cells that share a pretraining key (CASS: every label
fraction and arm of one seed; DINO: every fraction of one arm and seed) share one pretraining
stage; supervised cells have none. :func:`plan_grid` checks every cell before anything runs (the
data verifies, each label fraction leaves an image per class, local weight files exist) and says
what is already done, so a launcher submits only what is missing, in dependency order::

    plan = plan_grid([(overrides, spec), ...])
    for stage in plan.pending_pretrainings(): ...   # stage 1
    for cell in plan.pending_cells(): ...           # stage 2, after cell.pretrain

Hydra-free: the launchers (`launcher.py`, `local_launcher.py`) turn overrides into specs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cass_hpc import store
from cass_hpc.cell import (
    CellSpec,
    cell_dir,
    cell_key,
    check_cell,
    pretrain_dir,
    pretrain_key,
)
from cass_hpc.data.shards import Manifest, read_manifest
from cass_hpc.jobstate import is_done


@dataclass(frozen=True)
class PretrainStage:
    """One pretraining run; ``overrides`` are those of its first cell (+ ``stage=pretrain``)."""

    key: str
    dir: Path
    overrides: tuple[str, ...]
    done: bool

    @property
    def name(self) -> str:
        return self.dir.name


@dataclass(frozen=True)
class CellStage:
    """One grid cell (fine-tuning; the pretraining it needs is ``pretrain``, a key or None)."""

    key: str
    dir: Path
    overrides: tuple[str, ...]
    pretrain: str | None
    done: bool

    @property
    def name(self) -> str:
        return self.dir.name


@dataclass
class Plan:
    """The grid's stages; ``store_roots``: every run store it writes (one per experiment)."""

    cells: list[CellStage] = field(default_factory=list)
    pretrainings: dict[str, PretrainStage] = field(default_factory=dict)
    store_roots: list[Path] = field(default_factory=list)

    def pending_pretrainings(self) -> list[PretrainStage]:
        """Pretrainings some pending cell needs that are not done yet."""
        needed = {c.pretrain for c in self.pending_cells() if c.pretrain}
        return [p for k, p in self.pretrainings.items() if k in needed and not p.done]

    def pending_cells(self) -> list[CellStage]:
        return [c for c in self.cells if not c.done]


PRETRAIN_STAGE = "stage=pretrain"  # the override that makes a job compute only the pretraining


def plan_grid(items: Sequence[tuple[Sequence[str], CellSpec]]) -> Plan:
    """Check every cell and group them into stages. Raises ValueError naming the first bad
    cell (its overrides) and what is wrong, before anything has been submitted."""
    manifests: dict[tuple[Path, bool], Manifest] = {}
    plan = Plan()
    seen: set[str] = set()
    for overrides, spec in items:
        where = " ".join(overrides) or "(defaults)"
        try:
            source = (spec.dataset_path, spec.verify_shards)
            if source not in manifests:
                manifests[source] = read_manifest(spec.dataset_path, verify=spec.verify_shards)
            manifest = manifests[source]
            check_cell(spec, manifest)
            key = cell_key(spec, manifest)
            store.check_folder(cell_dir(spec, key))  # a file where its folder belongs
            if spec.pretrain is not None:
                store.check_folder(pretrain_dir(spec, pretrain_key(spec, manifest)))
        except ValueError as err:
            raise ValueError(f"cell [{where}]: {err}") from None
        if key in seen:  # the same cell twice (e.g. threads=1 and threads=2): run it once
            continue
        seen.add(key)
        pkey = pretrain_key(spec, manifest) if spec.pretrain is not None else None
        if pkey is not None and pkey not in plan.pretrainings:
            directory = pretrain_dir(spec, pkey)
            plan.pretrainings[pkey] = PretrainStage(
                pkey, directory, (*overrides, PRETRAIN_STAGE), is_done(directory / "pretrain.json")
            )
        directory = cell_dir(spec, key)
        done = is_done(directory / "results.json")
        plan.cells.append(CellStage(key, directory, tuple(overrides), pkey, done))
        if spec.store_root not in plan.store_roots:
            plan.store_roots.append(spec.store_root)
    return plan


def describe(plan: Plan) -> str:
    """One line: what the plan will run and what is already done."""
    cells, pre = plan.pending_cells(), plan.pending_pretrainings()
    done = len(plan.cells) - len(cells)
    return (
        f"{len(plan.cells)} cell(s): {len(pre)} pretraining(s) and {len(cells)} cell(s) to run, "
        f"{done} cell(s) already done"
    )


__all__ = ["PRETRAIN_STAGE", "CellStage", "Plan", "PretrainStage", "describe", "plan_grid"]
