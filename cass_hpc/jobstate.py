"""What a stage's job is doing, written by the job itself into ``<dir>/state.json`` (running,
done, failed, interrupted, with its attempt, job id, host, pid and log), for a cell and for a
pretraining alike; read by ``cass_hpc.status``."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import reprlib
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cass_hpc import store

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
SUBMISSIONS = "submissions"  # <run store>/submissions/<sweep>.json: what one launch will run


def _optional(*types: type) -> Callable[[object], bool]:
    return lambda value: value is None or (isinstance(value, types) and not isinstance(value, bool))


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _objects(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


STATES = ("running", "done", "failed", "interrupted", "blocked")  # what a state.json may say
# what status reads of each record, by field (a field may be absent): the shape it must have
STATE_SHAPE: dict[str, Callable[[object], bool]] = {
    "state": lambda v: v is None or v in STATES,
    "overrides": lambda v: v is None or _strings(v),
    "aliases": lambda v: isinstance(v, list) and all(map(_strings, v)),
    "attempt": _optional(int),
    "pid": _optional(int),
    "host": _optional(str),
    "slurm_job_id": _optional(str, int),
    "log": _optional(str),
    "error": _optional(str),
}
LAUNCH_SHAPE: dict[str, Callable[[object], bool]] = {
    "pretrainings": _objects,
    "cells": _objects,
    "local": _optional(dict),
    "sweep_dir": _optional(str),
}
ENTRY_SHAPE: dict[str, Callable[[object], bool]] = {
    "key": _optional(str),
    "dir": _optional(str),
    "job_id": _optional(str),
    "overrides": lambda v: v is None or _strings(v),
    "pretrain": _optional(str),
}
ENTRY_REQUIRED = ("key", "dir")


def shape_problem(
    record: object, shape: Mapping[str, Callable[[object], bool]], required: tuple[str, ...] = ()
) -> str | None:
    """What is wrong with the shape of a decoded JSON record (one phrase), or None."""
    if not isinstance(record, dict):
        return f"top level is a JSON {type(record).__name__}, expected an object"
    if missing := [name for name in required if record.get(name) is None]:
        return f"missing {', '.join(map(repr, missing))}"
    bad = next((k for k, fits in shape.items() if k in record and not fits(record[k])), None)
    return None if bad is None else f"{bad!r} is {reprlib.repr(record[bad])}"


def read_shaped(path: Path, shape: Mapping[str, Callable[[object], bool]]) -> dict[str, Any]:
    """The JSON object at ``path`` if it has ``shape``; ValueError ``PATH is corrupt (why)``."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError included
        raise ValueError(f"{path} is corrupt ({err})") from None
    if problem := shape_problem(record, shape):
        raise ValueError(f"{path} is corrupt ({problem})")
    return record


def read_launch(path: Path) -> dict[str, Any]:
    """One launch record (:func:`record_launch`), its stage lists' entries checked too."""
    record = read_shaped(path, LAUNCH_SHAPE)
    for name in ("pretrainings", "cells"):
        for index, entry in enumerate(record.get(name, [])):
            if problem := shape_problem(entry, ENTRY_SHAPE, ENTRY_REQUIRED):
                raise ValueError(f"{path} is corrupt ({name}[{index}]: {problem})")
    return record


def runtime() -> dict[str, Any]:
    """Where this job runs: SLURM job id and restart count if under SLURM, else host and pid."""
    job_id = os.environ.get("SLURM_ARRAY_JOB_ID")
    if job_id and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job_id = f"{job_id}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    log = None
    try:  # inside a submitit job: its stdout file is the log a user wants
        import submitit

        log = str(submitit.JobEnvironment().paths.stdout)
    except RuntimeError:
        pass
    return {
        "slurm_job_id": job_id or os.environ.get("SLURM_JOB_ID"),
        "attempt": int(os.environ.get("SLURM_RESTART_COUNT", "0")) + 1,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "log": log,
    }


def record(cell_dir: Path, state: str, **fields: Any) -> None:
    """Atomically (re)write the cell's state, keeping what earlier calls recorded."""
    path = cell_dir / STATE_FILE
    previous = store.read_json(path) if path.exists() else {}
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    content = {**previous, **fields, "state": state, "updated": now}
    try:
        store.write_json(path, content)
    except store.NoSpaceError:
        if state == "running":
            raise
        # A full disk: a stage that ends must still say how (else status blames a kill). The
        # record is small and its old copy's space is reused when rewritten in place.
        path.write_text(json.dumps(content, indent=2, ensure_ascii=False, default=str) + "\n")


def add_alias(cell_dir: Path, overrides: list[str] | None) -> None:
    """Record that a job with other ``overrides`` (``threads=1``, a reordered list) found this
    cell done, so ``status`` counts that job as this cell rather than as missing."""
    path = cell_dir / STATE_FILE
    if overrides is None or not path.exists():
        return
    with store.exclusive(cell_dir):  # two jobs of one grid may find the same cell done
        state = store.read_json(path)
        aliases = [list(a) for a in state.get("aliases", [])]
        if list(overrides) != state.get("overrides") and list(overrides) not in aliases:
            store.write_json(path, {**state, "aliases": [*aliases, list(overrides)]})


@contextlib.contextmanager
def reporting(directory: Path, overrides: list[str] | None = None) -> Iterator[None]:
    """Record ``running`` (with where) on entry, then ``done``, ``failed`` (with the error's last
    line) or ``interrupted`` (Ctrl-C); a preemption (SystemExit) leaves ``running`` for status
    to resolve with SLURM. Exceptions propagate."""
    record(directory, "running", overrides=overrides, error=None, **runtime())
    try:
        yield
    except KeyboardInterrupt:
        record(directory, "interrupted", error="interrupted (Ctrl-C); rerun to resume")
        raise
    except Exception as err:
        record(directory, "failed", error=error_line(err))
        err.add_note(f"{RECORDED_IN}{directory / STATE_FILE}")  # shown under a traceback
        raise
    record(directory, "done")


RECORDED_IN = "its failure is recorded in "


def recorded(err: BaseException) -> bool:
    """Whether ``err`` ended a stage that :func:`reporting` had begun (its log then matters),
    rather than refusing the job before any work."""
    return any(note.startswith(RECORDED_IN) for note in getattr(err, "__notes__", ()))


def error_line(err: BaseException) -> str:
    """``Type: last line of the message`` — what status shows for a failure."""
    last = (str(err).strip().splitlines() or [type(err).__name__])[-1]
    return f"{type(err).__name__}: {last}"


def unusable(record: Path) -> str | None:
    """Why the stage record ``record`` (results.json, pretrain.json) that exists cannot be used,
    or None when it can (or does not exist). The one notion of done for run, plan, status and
    collect: a results.json must pass the collector's schema check."""
    if not record.exists():
        return None
    try:
        raw = json.loads(record.read_text(encoding="utf-8"))
        if record.name == "results.json":
            from cass_hpc.report.records import parse_record  # the collector's own check

            parse_record(raw)
        elif not isinstance(raw, dict):
            raise ValueError(f"top level is a JSON {type(raw).__name__}, expected an object")
    except (OSError, ValueError) as err:  # JSONDecodeError and RecordError are ValueErrors
        return f"{record} is unusable ({err}); delete it to recompute"
    return None


def is_done(record: Path) -> bool:
    """``record`` exists and is usable (see :func:`unusable`)."""
    return record.exists() and unusable(record) is None


def launch_entry(stage: Any, job_id: str | None, **extra: Any) -> dict[str, Any]:
    """One stage (a ``plan`` pretraining or cell) as a launch record lists it: what ``submitted``
    hands to ``status`` and the SLURM launcher's ``in_flight``. ``job_id`` None: a local job."""
    return {"key": stage.key, "dir": str(stage.dir), "job_id": job_id, **extra,
            "overrides": list(stage.overrides)}  # fmt: skip


def record_launch(root: Path, sweep: Path, record: dict[str, Any]) -> None:
    """Write one launch's ``record`` (its ``pretrainings`` and ``cells`` as
    :func:`launch_entry` gives them, and what else the launcher keeps) to run store ``root``'s
    ``submissions/<sweep>.json``, atomically, stamped with the time and the sweep folder."""
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    stamped = {"submitted": stamp, "sweep_dir": str(sweep), **record}
    store.write_json(root / SUBMISSIONS / f"{sweep.name}.json", stamped)


def submitted(
    root: Path, warn: Callable[[str], None] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pretrainings and cells every launch into run store ``root`` planned (their keys,
    dirs, overrides; for SLURM their job ids and dependencies), oldest launch first. A local
    launch's stages have no job id (``None``) and carry ``local`` (its launcher's host and pid)
    and ``sweep_dir`` (where submitit keeps its jobs). A corrupt record is left out, with one
    line to ``warn`` (default: the log)."""
    records = []
    for path in sorted((root / SUBMISSIONS).glob("*.json")):
        try:
            records.append(read_launch(path))
        except ValueError as err:
            (warn or log.warning)(f"{err}; its stages are shown from their folders only")
    pretrainings, cells = [], []
    for r in records:
        extra = {"local": r["local"], "sweep_dir": r.get("sweep_dir")} if r.get("local") else {}
        pretrainings += [{**p, **extra} for p in r.get("pretrainings", [])]
        cells += [{**c, **extra} for c in r.get("cells", [])]
    return pretrainings, cells
