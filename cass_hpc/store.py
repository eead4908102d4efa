"""The run store: stable keys, atomic writes, and locks that make re-running a grid free.

Layout under one store root (``runs/<experiment>``)::

    pretrain/<method>-<key>/   checkpoint.pt (each epoch), <arm>.pt (final), pretrain.json (done)
    cells/<method>-<arm>-lf<fraction>-s<seed>-<key>/results.json (done)

Keys are hashes of the resolved configuration that determines the result (never timestamps),
so a requeued or re-run job finds its own artifacts and a finished cell is skipped.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def stable_key(obj: Any, length: int = 12) -> str:
    """Hash of a JSON-serialisable object, independent of dict order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


class NoSpaceError(OSError):
    """The filesystem under the run store is full (ENOSPC, or the user's quota: EDQUOT): one
    line naming the filesystem, the file and the space it needs; nothing partial is left."""

    def __str__(self) -> str:
        return str(self.strerror)  # the line alone, without "[Errno 28]"


def atomic_write(path: Path, write: Callable[[Path], None], size: int | None = None) -> None:
    """Call ``write(tmp)`` then rename ``tmp`` onto ``path``: readers never see a partial file.

    A full filesystem raises :class:`NoSpaceError` (``size``, in bytes, says how much the file
    needs); the temporary is removed and whatever ``path`` held before (the last good
    checkpoint) is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _no_space(err, path, size) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; others get what umask allows
        with open(tmp, "rb") as handle:  # data on disk before the rename makes it visible
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        written = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        full = _full(err)
        if full is not None:
            raise _no_space(full, path, max(size or 0, written)) from None
        raise


_FULL = (errno.ENOSPC, errno.EDQUOT)


def _full(err: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT error behind ``err`` (torch wraps it in a RuntimeError), or None."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, OSError) and err.errno in _FULL:
            return err
        if "No space left on device" in str(err) or "Disk quota exceeded" in str(err):
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def _no_space(err: OSError, path: Path, size: int | None) -> OSError:
    """``err`` as one line: which filesystem, which file, how much it needs, what to do."""
    full = _full(err)
    if full is None:
        return err
    mount = Path(os.path.abspath(path.parent))
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        import shutil

        free = f"{shutil.disk_usage(mount).free / 2**20:.1f} MB free"
    except OSError:
        free = "free space unknown"
    quota = "quota exceeded" if full.errno == errno.EDQUOT else "no space left"
    needs = f" (needs ~{max(size, 1) / 2**20:.1f} MB)" if size else ""
    return NoSpaceError(
        full.errno,
        f"{quota} on {mount} ({free}) writing {path}{needs}; nothing partial was written and "
        f"what {path.name} held before is kept: free space there or choose another runs_dir, "
        f"then rerun to resume",
    )


def check_folder(path: Path) -> None:
    """ValueError (one line) when ``path`` or a folder above it exists but is not a folder: a
    file where the run store needs one (mkdir would raise NotADirectoryError/FileExistsError)."""
    for folder in (path, *path.parents):
        if folder.exists() and not folder.is_dir():
            what = "" if folder == path else f" (for {path})"
            raise ValueError(
                f"{folder} is a file where the run store needs a folder{what}; move the file "
                f"away or choose another runs_dir"
            )


def remove_temporaries(path: Path) -> list[Path]:
    """Remove what an interrupted :func:`atomic_write` of ``path`` left (``.<name>.*.tmp``
    beside it; nothing else), e.g. a checkpoint save killed half-way; returns them."""
    left = sorted(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []
    for tmp in left:
        tmp.unlink(missing_ok=True)
    return left


def remove_unused(path: Path, names: set[str], parents: int = 2) -> bool:
    """Remove folder ``path`` if it holds nothing but entries named in ``names`` (what Hydra
    writes before a job starts: a refused launch leaves no output), then up to ``parents``
    folders above it that are left empty. True if ``path`` was removed."""
    import shutil

    if not path.is_dir() or any(p.name not in names for p in path.iterdir()):
        return False
    shutil.rmtree(path)
    for parent in list(path.parents)[:parents]:
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    blob = text.encode("utf-8")
    atomic_write(path, lambda tmp: tmp.write_bytes(blob), size=len(blob))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def torch_save(path: Path, obj: Any) -> None:
    import torch  # lazily: the collector uses this module without torch

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a handle: a full disk is then an OSError (ENOSPC),
            torch.save(obj, handle)  # not torch's "basic_ios::clear: iostream error"

    atomic_write(path, write, size=tensor_bytes(obj))


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in ``obj`` (nested dicts, lists, tuples): what a save needs."""
    if hasattr(obj, "untyped_storage"):
        return int(obj.numel() * obj.element_size())
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """numpy arrays by name, compressed (read back with ``numpy.load``)."""
    import numpy as np

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a handle: np.savez would append .npz to a path
            np.savez_compressed(handle, **arrays)

    atomic_write(path, write)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable JSON ({err}); delete it to recompute") from err


def read_record(path: Path) -> dict[str, Any] | None:
    """A finished stage's record (results.json, pretrain.json): the JSON object at ``path``, or
    None when it is missing, truncated or not an object — then the stage is not done."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


@contextlib.contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (``.lock`` file, ``fcntl.flock``).

    Two jobs that need the same pretraining serialise here: the first computes it, the second
    waits and then finds it done. The lock is released when the holder exits or dies.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as err:  # Lustre without -o flock: ENOSYS / EOPNOTSUPP
            raise ValueError(
                f"{directory / '.lock'}: this filesystem does not support file locks "
                f"({err.strerror}); put runs_dir on a filesystem with flock (or mount Lustre "
                f"with -o flock), or submit the grid to SLURM, whose stages need no lock"
            ) from err
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
