"""What makes a training stage resumable, once for both loops (``pretrain.py``, ``finetune.py``).

A stage keeps one checkpoint file. It is written atomically after every epoch and, when SLURM
warns the job with SIGUSR2 (time limit, preemption; ``preempt``), at the next step boundary
with the step and the epoch's running sums; a rerun or requeued job loads it and continues
onto the same trajectory (the loader is positioned by ``data.loader.set_position``). Temporary
files left by a save that was killed are removed when the stage starts.

Usage inside a loop::

    stage = ResumableStage(path, loader.generator)
    state = stage.load()                       # None on a fresh start
    with preempt.guard():
        for epoch in range(stage.start_epoch, epochs + 1):
            for step, batch in enumerate(loader, start=stage.start_step + 1):
                ...
                stage.after_step(epoch, step, loader, resumable, payload, sums)
            stage.after_epoch(epoch, payload())
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any

import torch

from cass_hpc import preempt, rng, store

log = logging.getLogger(__name__)


class ResumableStage:
    """The checkpoint of one stage at ``path`` (None: nothing is saved, e.g. in tests)."""

    def __init__(self, path: Path | None, generator: torch.Generator | None, name: str) -> None:
        self.path, self.generator, self.name = path, generator, name
        self.start_epoch, self.start_step = 1, 0
        self.partial: dict[str, Any] | None = None  # the saved epoch's running sums
        if path is not None:
            store.remove_temporaries(path)  # of a save killed half-way (kill -9, node failure)

    def load(self) -> dict[str, Any] | None:
        """The saved state (RNG restored), setting where to start; None if there is none."""
        if self.path is None or not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            rng.restore(state["rng"], self.generator)  # same model-side randomness onwards
            self.partial = state.get("partial")  # saved mid-epoch (SIGUSR2): the epoch, its step
            self.start_epoch = state["epoch"] if self.partial else state["epoch"] + 1
        except Exception as err:  # noqa: BLE001 - torch's many ways of saying "cannot read it"
            raise ValueError(
                f"{self.path}: the {self.name} checkpoint is truncated or corrupt "
                f"({type(err).__name__}); delete it to start the {self.name} over"
            ) from None
        self.start_step = self.partial["step"] if self.partial else 0
        log.info("resuming %s from %s at epoch %d, step %d", self.name, self.path,
                 self.start_epoch, self.start_step + 1)  # fmt: skip
        return state

    def sums(self, fresh: dict[str, Any]) -> dict[str, Any]:
        """The running sums an epoch starts from: the saved ones once (after a mid-epoch
        resume), else ``fresh``; later epochs start at step 0."""
        sums, self.partial = self.partial or fresh, None
        return dict(sums)

    def epoch_steps_start(self) -> int:
        start, self.start_step = self.start_step, 0
        return start

    def save(self, epoch: int, payload: dict[str, Any], partial: dict | None = None) -> None:
        if self.path is None:
            return
        state = {"epoch": epoch, "partial": partial, **payload,
                 "rng": rng.capture(self.generator)}  # fmt: skip
        store.torch_save(self.path, state)
        preempt.note_progress()  # a requeue after this save is not one "without progress"

    def after_step(
        self, epoch: int, step: int, loader: Sized, resumable: bool,
        payload: Callable[[], dict[str, Any]], sums: dict[str, Any],
    ) -> None:  # fmt: skip
        """If USR2 arrived: save at this step (unless it is the epoch's last, whose checkpoint
        follows) and hand over to the launcher's handler (requeue and exit)."""
        if not preempt.requested() or step >= len(loader):
            return
        if resumable:
            self.save(epoch, payload(), {"step": step, **sums})
            log.warning("saved %s at epoch %d, step %d", self.name, epoch, step)
        preempt.hand_over()  # else the last epoch's checkpoint stands

    def after_epoch(self, epoch: int, payload: dict[str, Any]) -> None:
        self.save(epoch, payload)
        if preempt.requested():  # USR2 during the epoch's last step or its bookkeeping
            preempt.hand_over()
