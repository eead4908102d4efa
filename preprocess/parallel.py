"""Run a function over items in worker processes, yielding results in the items' order.

Used by ``preprocess.pack`` to decode and resize images on several cores while one process
writes the shards in a fixed order (so any number of workers gives the same bytes). Items go
out in batches and at most ``2 × workers`` batches are in flight, so memory stays bounded
however slow the writer is. Workers are forked from a fresh server process (``forkserver``,
not a fork of this one, whose progress-bar thread a fork would copy mid-lock), ignore SIGINT
(the parent handles Ctrl-C and terminates them) and exit on their own as soon as the parent is
killed (SIGKILL leaves no orphans behind).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

_IN_FLIGHT_PER_WORKER = 2


def default_workers() -> int:
    """min(4, the cores this process may use): SLURM's allocation where it sets the affinity."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _exit_with_parent(lifeline: Connection) -> None:
    lifeline.poll(None)  # nothing is ever sent: this returns at end of file, when the parent's
    os._exit(1)  # end closed (it exited, or was killed): nobody will read our results


def _init_worker(lifeline: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(lifeline,), daemon=True).start()


def _start_fork_server() -> None:
    """Start the fork server with Ctrl-C ignored, so every worker it forks is born ignoring it.

    "Ignore" survives exec (a Python handler would not), the server keeps it and hands it to
    its children; so a Ctrl-C to the process group can never kill a half-started worker, which
    would make the pool start another mid-shutdown. Called before any other thread runs, with
    SIGINT also blocked, so a Ctrl-C meanwhile is held and arrives right after, not lost.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()  # signal handlers belong to the main thread
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C until the block ends, then deliver it as usual: the pool under
    construction is then whole and terminated cleanly, never left with a half-started worker."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)  # as if it came now: KeyboardInterrupt by default


def _run_batch(function: Callable[[Item], Result], batch: Sequence[Item]) -> list[Result]:
    return [function(item) for item in batch]


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class OrderedMap:
    """``map(function, items)`` on up to ``workers`` processes, results in the items' order.

    ``function`` and the items must be picklable (module-level functions, functools.partial).
    The first batch runs here; if the whole map would take less than ``serial_below_s`` at
    that pace, the rest runs here too (starting processes costs ~0.5 s). ``processes`` says
    how many ran it. An exception raised by ``function`` is re-raised at its item's turn;
    ``close()`` (or leaving a ``contextlib.closing`` block) terminates the workers.
    """

    def __init__(
        self,
        function: Callable[[Item], Result],
        items: Sequence[Item],
        *,
        workers: int,
        batch_size: int = 8,
        serial_below_s: float = 0.0,
    ) -> None:
        self.function, self.workers, self.serial_below_s = function, workers, serial_below_s
        self.batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
        self.processes = 1
        if workers > 1 and len(self.batches) > 1:
            _start_fork_server()  # now, while this is the only thread (see there)
        self._results = self._run()

    def __iter__(self) -> Iterator[Result]:
        return self._results

    def close(self) -> None:
        """Stop: terminate the workers, if any (idempotent)."""
        self._results.close()

    def _run(self) -> Iterator[Result]:
        batches, workers = iter(self.batches), min(self.workers, len(self.batches))
        if workers > 1 and self.serial_below_s > 0:
            started = time.perf_counter()
            yield from _run_batch(self.function, next(batches))
            estimate = (time.perf_counter() - started) * len(self.batches)
            workers = 1 if estimate < self.serial_below_s else min(workers, len(self.batches) - 1)
        if workers <= 1:
            for batch in batches:
                yield from _run_batch(self.function, batch)
            return
        self.processes = workers
        with contextlib.ExitStack() as stack:
            pending: deque[Future] = deque()
            # Only this process holds the lifeline's sending end: when it dies, the workers
            # read end of file and exit (the fork server outlives this process while they run).
            lifeline, keep = _context().Pipe(duplex=False)
            stack.callback(lifeline.close)
            stack.callback(keep.close)
            with _sigint_deferred():  # workers start on submit: let them all start whole
                pool = ProcessPoolExecutor(
                    workers, mp_context=_context(), initializer=_init_worker, initargs=(lifeline,)
                )
                stack.callback(_stop, pool, pending)
                for batch in itertools.islice(batches, workers * _IN_FLIGHT_PER_WORKER):
                    pending.append(pool.submit(_run_batch, self.function, batch))
            while pending:
                try:
                    results = pending[0].result()
                except BrokenProcessPool as err:
                    raise RuntimeError(
                        "a decoding worker process died abruptly (killed, or out of memory?); "
                        "re-run with fewer --workers or with --workers 1"
                    ) from err
                pending.popleft()
                for batch in itertools.islice(batches, 1):
                    pending.append(pool.submit(_run_batch, self.function, batch))
                yield from results


def _stop(pool: ProcessPoolExecutor, pending: deque[Future]) -> None:
    """Shut the pool down: at once if work is left (an error or Ctrl-C), else after it."""
    if pending:
        for future in pending:
            future.cancel()
        for process in list(getattr(pool, "_processes", {}).values()):  # a private attribute
            with contextlib.suppress(Exception):
                process.terminate()  # workers ignore Ctrl-C; a decode in flight is wasted
    pool.shutdown(wait=True, cancel_futures=True)
