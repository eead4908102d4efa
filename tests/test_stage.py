"""The resumable-stage helper both training loops use (cass_hpc/stage.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cass_hpc import preempt
from cass_hpc.stage import ResumableStage


def test_a_stage_removes_the_temporaries_of_a_killed_save_and_resumes_where_it_saved(
    tmp_path: Path,
) -> None:
    path = tmp_path / "checkpoint.pt"
    stale = tmp_path / ".checkpoint.pt.x1y2.tmp"  # kill -9 during torch.save
    stale.write_bytes(b"\0" * 1024)
    generator = torch.Generator().manual_seed(3)
    stage = ResumableStage(path, generator, "pretraining")
    assert not stale.exists() and stage.load() is None and stage.start_epoch == 1
    stage.save(4, {"weights": torch.ones(2)}, {"step": 7, "total": 1.5})

    again = ResumableStage(path, torch.Generator(), "pretraining")
    state = again.load()
    assert state is not None and torch.equal(state["weights"], torch.ones(2))
    assert (again.start_epoch, again.start_step) == (4, 7)  # mid-epoch: that epoch, its step
    assert again.sums({"step": 0, "total": 0.0}) == {"step": 7, "total": 1.5}
    assert again.sums({"step": 0, "total": 0.0}) == {"step": 0, "total": 0.0}  # later epochs
    assert again.epoch_steps_start() == 7 and again.epoch_steps_start() == 0


def test_a_save_counts_as_progress_for_the_requeue_budget(tmp_path: Path) -> None:
    class Delayed:
        _timeout_countdown = 0  # submitit's count of requeues left

    class Handler:  # the shape of submitit's SignalHandler that preempt refills
        _delayed = Delayed()

        def has_timed_out(self) -> bool:
            return True

        def checkpoint_and_try_requeue(self, signum: int, frame: object) -> None:
            pass

    handler = Handler()
    preempt.set_requeue_budget(2)
    preempt._requeues["progress"] = False
    preempt._refill_requeues(handler.checkpoint_and_try_requeue)
    assert handler._delayed._timeout_countdown == 0  # nothing saved: the count stands
    ResumableStage(tmp_path / "c.pt", None, "fine-tuning").save(1, {})
    preempt._refill_requeues(handler.checkpoint_and_try_requeue)
    assert handler._delayed._timeout_countdown == 3  # budget + the time-out submitit subtracts
    preempt.set_requeue_budget(None)


def test_a_truncated_or_foreign_checkpoint_is_one_line_naming_it(tmp_path: Path) -> None:
    """Issue 27 (items 4 and 9): a stage's checkpoint that torch cannot read, or that is not a
    stage's, is one ValueError naming the file and what to do, not torch's traceback."""
    path = tmp_path / "checkpoint.pt"
    ResumableStage(path, torch.Generator(), "pretraining").save(1, {"w": torch.ones(3)})
    blob = path.read_bytes()
    for content in (blob[: len(blob) // 2], b"not a checkpoint", None):
        if content is None:
            torch.save({"w": torch.ones(3)}, path)  # a weights file, not a stage's checkpoint
        else:
            path.write_bytes(content)
        with pytest.raises(ValueError) as refused:
            ResumableStage(path, torch.Generator(), "pretraining").load()
        assert str(refused.value).startswith(f"{path}: the pretraining checkpoint is truncated")
        assert str(refused.value).endswith("delete it to start the pretraining over")
