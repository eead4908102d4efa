"""Stop a training loop at a step boundary when SLURM says the job must go.

SLURM warns a job with SIGUSR2 ``signal_delay_s`` before its time limit, and ``scancel
--signal=USR2`` does the same for a preemption. submitit's handler for it requeues the job and
exits at once — wherever the loop happens to be, so everything since the last epoch's checkpoint
would be recomputed. While :func:`guard` is active, USR2 only raises a flag instead; the loop
calls :func:`requested` after each optimiser step, saves its state (with the step) and calls
:func:`hand_over`, which runs the handler that was there before (submitit's: requeue and exit;
none: exit with a message). If the loop does not get there within ``grace_s`` seconds (a long
evaluation, say), the previous handler runs anyway and the job resumes from its last checkpoint.

Outside a guard (between stages, waiting for a shared pretraining) the previous handler is in
place and acts at once, as before.

Requeues are counted by progress: submitit requeues a timed-out job at most ``max_num_timeout``
times. A stage that saved a checkpoint since this attempt started (:func:`note_progress`) gets
that budget back before submitit's handler counts, so a 55-hour pretraining completes under a
12-hour limit; only attempts that saved nothing use it up (slurm/README.md has the arithmetic).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

GRACE_S = 60  # seconds the loop has to reach a step boundary after USR2 (signal_delay_s ≥ 90)


class Stopped(SystemExit):
    """Raised by :func:`hand_over` when no launcher handles USR2 (a run started by hand)."""


_state: dict[str, Any] = {"requested": False, "previous": None, "frame": None}
_requeues: dict[str, Any] = {"budget": None, "progress": False}


def set_requeue_budget(max_num_timeout: int | None) -> None:
    """Requeues without progress a job may use (the launcher's ``max_num_timeout``)."""
    _requeues["budget"] = max_num_timeout


def note_progress() -> None:
    """This attempt saved a checkpoint: a requeue now loses nothing."""
    _requeues["progress"] = True


def _refill_requeues(previous: Any) -> None:
    """Give a job that made progress its whole requeue budget back (submitit keeps the count
    in the job's pickled ``DelayedSubmission``; its handler subtracts one per time-out)."""
    handler = getattr(previous, "__self__", None)
    delayed = getattr(handler, "_delayed", None)
    budget = _requeues["budget"]
    if delayed is None or budget is None:
        return
    if _requeues["progress"]:
        timed_out = bool(handler.has_timed_out())
        delayed._timeout_countdown = max(delayed._timeout_countdown, budget + timed_out)
        log.info("progress saved since this attempt started: %d requeue(s) without progress "
                 "left after this one", budget)  # fmt: skip
    else:
        log.warning("no checkpoint saved since this attempt started: this requeue counts "
                    "against max_num_timeout (%d left)", delayed._timeout_countdown)  # fmt: skip


def requested() -> bool:
    """Whether USR2 arrived while the current guard is active."""
    return bool(_state["requested"])


def hand_over() -> None:
    """After the loop saved its state: let the previous USR2 handler requeue and exit."""
    signal.alarm(0)
    previous, frame = _state["previous"], _state["frame"]
    _state["requested"] = False
    if callable(previous):
        _refill_requeues(previous)
        previous(signal.SIGUSR2, frame)  # submitit: requeue, then sys.exit
    raise Stopped("stopped on SIGUSR2 with the state saved; run the same command to resume")


def _on_usr2(signum: int, frame: FrameType | None) -> None:
    if _state["requested"]:
        return
    _state["requested"], _state["frame"] = True, frame
    log.warning("SIGUSR2: saving at the next step boundary (within %d s), then requeueing", GRACE_S)
    signal.signal(signal.SIGALRM, _too_late)
    signal.alarm(GRACE_S)


def _too_late(signum: int, frame: FrameType | None) -> None:
    log.warning("no step boundary within %d s of SIGUSR2: requeueing from the last checkpoint",
                GRACE_S)  # fmt: skip
    hand_over()


@contextmanager
def guard() -> Iterator[None]:
    """Within this block USR2 asks for a stop at the next step boundary (see module doc).
    A no-op outside the main thread, where signal handlers cannot be set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGUSR2)
    saved = dict(_state)
    _state.update(requested=False, previous=previous, frame=None)
    signal.signal(signal.SIGUSR2, _on_usr2)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGUSR2, previous)
        _state.update(saved)
