"""Jobs run the code they were submitted with.

A grid submitted to SLURM may wait in the queue for days; meanwhile the checkout changes. At
submission the launcher copies the code a job imports (``cass_hpc/``, ``conf/``,
``preprocess/``) into the sweep directory with a ``code.json`` (git commit, dirty flag) and
puts that copy first on each job's ``PYTHONPATH`` (with ``PYTHONSAFEPATH=1``, so the job's
working directory, perhaps the checkout, is not searched first). :func:`code_version` tells
any process which code it runs; every results.json records it.
"""

from __future__ import annotations

import functools
import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from cass_hpc import store

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent
COPIED = ("cass_hpc", "conf", "preprocess", "hydra_plugins")
INFO = "code.json"


def _git(*args: str) -> str | None:
    if not shutil.which("git"):
        return None
    proc = subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def checkout_version() -> dict[str, Any]:
    """The checkout's git commit and whether its tracked or new files differ from it."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=normal", "--", *COPIED)
    return {"commit": commit, "dirty": None if status is None else bool(status),
            "source": str(CHECKOUT)}  # fmt: skip


LIBRARIES = ("torch", "torchvision", "timm", "lightly", "accelerate", "huggingface_hub")


@functools.cache
def library_versions() -> dict[str, str | None]:
    """The versions of the libraries whose numerics a result depends on (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


@functools.cache
def code_version() -> dict[str, Any]:
    """Which code this process runs: a submission's snapshot (its ``code.json``) or the
    checkout itself (``snapshot: null``)."""
    info = CHECKOUT / INFO
    if info.is_file():
        return {**json.loads(info.read_text()), "snapshot": str(CHECKOUT)}
    return {**checkout_version(), "snapshot": None}


def take(dest: Path) -> dict[str, Any]:
    """Copy the code jobs import into ``dest`` (atomically: a temporary name, then renamed)
    and return its version; a ``dest`` this process already took is reused."""
    if (dest / INFO).is_file():  # a sweep launched in batches: one snapshot per launch
        return {**json.loads((dest / INFO).read_text()), "snapshot": str(dest)}
    version = checkout_version()
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        shutil.copytree(CHECKOUT / name, tmp / name, ignore=ignore)
    store.write_json(tmp / INFO, version)
    tmp.rename(dest)
    return {**version, "snapshot": str(dest)}


def job_environment(snapshot: Path) -> list[str]:
    """Shell lines (sbatch ``setup``) that make a job import the snapshot's code."""
    path = shlex.quote(str(snapshot))
    return [
        f"export CASS_CODE={path}",
        f"export PYTHONPATH={path}${{PYTHONPATH:+:$PYTHONPATH}}",
        "export PYTHONSAFEPATH=1  # not the working directory first: it may be the checkout",
    ]
