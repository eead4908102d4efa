"""A SLURM launcher whose jobs run inside the cass container image (``hydra/launcher=apptainer``).

It submits a grid as a DAG of stages like every SLURM profile (``dag_launcher.py``).

Each job of a submitit job array starts Python with submitit's ``SlurmExecutor(python=...)``
command. hydra-submitit-launcher 1.2.0 (the newest release) forwards none of the executor's
constructor options but ``max_num_timeout`` (``python`` is added upstream by
facebookresearch/hydra#2830, unreleased), so this is its ``SlurmLauncher`` plus three keys:

- ``image``: the Apptainer image (``.sif``) every job runs in;
- ``binds``: comma-separated host paths bound at the same path inside (data, runs outside the
  repository or the launch directory; both of those are always bound);
- ``python``: the command itself; unset, it is ``containers/apptainer-python --image IMAGE
  --bind BINDS --`` of this checkout, i.e. ``apptainer exec --nv --cleanenv ... python``.

The image, the binds and every run and data path of the grid are checked before anything is
submitted, so a missing bind fails once at submission instead of in every job. The job unpickles
this launcher inside the image, where the checkout is bound at the same path and comes first on
``PYTHONPATH``: jobs run the code (and ``conf/``) of the checkout that submitted them, on the
image's pinned stack. containers/README.md has the whole setup.
"""

from __future__ import annotations

import contextlib
import functools
import shlex
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import submitit
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from cass_hpc.dag_launcher import DagSlurmLauncher

REPO = Path(__file__).resolve().parents[1]
WRAPPER = REPO / "containers" / "apptainer-python"
# config keys naming host paths a job reads or writes (submitit's folder is under the sweep dir)
PATH_KEYS = ("runs_dir", "dataset.path", "hydra.sweep.dir")


def split_binds(binds: str | None) -> list[Path]:
    """``"/data,/scratch/runs"`` (CASS_BINDS) as absolute paths; each must exist."""
    paths = []
    for item in (binds or "").split(","):
        if not item.strip():
            continue
        path = Path(item.strip()).expanduser().resolve()
        if not path.exists():
            raise ValueError(
                f"hydra.launcher.binds (CASS_BINDS): {item.strip()} does not exist on this "
                f"machine; list only existing host paths, comma-separated"
            )
        paths.append(path)
    return paths


def uncovered(paths: Sequence[Path], roots: Sequence[Path]) -> list[Path]:
    """The ``paths`` that lie under none of ``roots`` (so a job in the image cannot see them)."""
    return [p for p in paths if not any(p == r or r in p.parents for r in roots)]


def container_python(image: str | None, binds: Sequence[Path], wrapper: Path = WRAPPER) -> str:
    """The shell command that starts Python inside ``image`` in one job (submitit's ``python``)."""
    if not image:
        raise ValueError(
            "hydra.launcher.image is not set: export CASS_IMAGE=/path/to/cass.sif (make "
            "container builds it) or pass hydra.launcher.image=..."
        )
    path = Path(image).expanduser().resolve()
    if not path.is_file():
        raise ValueError(
            f"hydra.launcher.image (CASS_IMAGE): {image} is not a file; build it with make "
            f"container, or point CASS_IMAGE at your cass.sif"
        )
    command = [str(wrapper), "--image", str(path)]
    if binds:
        command += ["--bind", ",".join(str(b) for b in binds)]
    return shlex.join([*command, "--"])


@contextlib.contextmanager
def submitit_python(python: str) -> Iterator[None]:
    """Make ``SlurmLauncher.launch`` build its executor with ``python`` as the job's Python.

    ``launch`` creates ``submitit.AutoExecutor`` itself; while this context is active that name
    passes ``slurm_python`` along (submitit's own constructor option).
    """
    auto_executor = submitit.AutoExecutor
    submitit.AutoExecutor = functools.partial(auto_executor, slurm_python=python)  # type: ignore[misc]
    try:
        yield
    finally:
        submitit.AutoExecutor = auto_executor  # type: ignore[misc]


def override_paths(job_overrides: Sequence[Sequence[str]]) -> list[str]:
    """Values of the path keys set by the grid's overrides (``dataset.path=a`` in each job)."""
    values = []
    for overrides in job_overrides:
        for override in overrides:
            key, _, value = override.lstrip("+~").partition("=")
            if key in PATH_KEYS and value:
                values.append(value)
    return values


class ContainerSlurmLauncher(DagSlurmLauncher):
    """hydra-submitit-launcher's ``SlurmLauncher``; every job's Python runs inside ``image``."""

    def __init__(
        self,
        image: str | None = None,
        binds: str | None = None,
        python: str | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.image, self.binds, self.python = image, binds, python

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        python = self.python or self._python_checked(job_overrides)
        with submitit_python(python):
            return super().launch(job_overrides, initial_job_idx)

    def _python_checked(self, job_overrides: Sequence[Sequence[str]]) -> str:
        binds = split_binds(self.binds)
        assert self.config is not None
        paths = [OmegaConf.select(self.config, key, default=None) for key in PATH_KEYS]
        paths = [str(p) for p in paths if p] + override_paths(job_overrides)
        launch_dir = Path.cwd().resolve()
        missing = uncovered([(launch_dir / p).resolve() for p in paths], [REPO, launch_dir, *binds])
        if missing:
            raise ValueError(
                f"{missing[0]} ({' / '.join(PATH_KEYS)}) would not be visible inside the image: "
                f"add it to CASS_BINDS (comma-separated host paths), e.g. CASS_BINDS={missing[0]}"
            )
        return container_python(self.image, binds)
