"""The real image: build containers/Containerfile with podman and run the project in it.

Slow (a 6.3 GB image; about 10 min on 2 busy cores) and run only by ``make test-container``, which
sets CASS_TEST_CONTAINER=1. The build needs no registry: its base is Debian bookworm made by
debootstrap and imported into podman (containers/build.sh --debootstrap); pip takes the wheels
from the host's pip index settings where they are local (torch, the CUDA wheels) and from PyPI
otherwise (--network=host). Everything after the build runs with --network=none: the image must
not need the network. Podman 4.3 here runs containers only with runc and low ulimits
(../shared/SLURM-NOTES.md). The images are removed afterwards unless CASS_KEEP_IMAGE=1.

Inside the image it runs the project's default test suite except tests/test_slurm.py (it starts
SLURM daemons, which the image does not hold: jobs get SLURM from the node) and
tests/containers (they need podman and make on the host). CASS_CONTAINER_PYTEST_ARGS replaces
that selection.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TAG = "localhost/cass-hpc:test"
BASE = "localhost/cass-base:bookworm"
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
TESTS = "/opt/cass-hpc/tests"
DEFAULT_PYTEST = f"{TESTS} -x -q -p no:cacheprovider --ignore={TESTS}/test_slurm.py "
DEFAULT_PYTEST += f"--ignore={TESTS}/containers"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("CASS_TEST_CONTAINER") != "1",
        reason="builds a 6.3 GB image (~10 min): run it with make test-container",
    ),
]


def podman_run(*args: str, entrypoint: str | None = None, timeout: float = 600) -> str:
    """``podman run`` in the test image, offline; returns stdout, fails with the output tail."""
    command = [*PODMAN, "run", "--rm", "--network=none", *LIMITS, "-e", "OMP_NUM_THREADS=1"]
    if entrypoint:
        command += ["--entrypoint", entrypoint]
    proc = subprocess.run([*command, TAG, *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    missing = [tool for tool in ("podman", "runc", "debootstrap") if not shutil.which(tool)]
    if missing:
        pytest.fail(f"make test-container needs {', '.join(missing)}: apt-get install podman "
                    f"runc debootstrap uidmap")  # fmt: skip
    log = tmp_path_factory.mktemp("build") / "build.log"
    env = {
        **os.environ,
        "PODMAN_FLAGS": "--runtime runc",
        "BUILD_FLAGS": f"--network=host {' '.join(LIMITS)}",
        "PYTHON": sys.executable,  # whose pip settings (local wheel index) the build uses
    }
    start = time.monotonic()
    try:
        with log.open("w") as out:
            proc = subprocess.run(
                [str(REPO / "containers" / "build.sh"), "--engine", "podman", "--debootstrap",
                 "--tag", TAG],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=3600,
            )  # fmt: skip
        print(f"\nimage built in {time.monotonic() - start:.0f} s (log: {log})")
        assert proc.returncode == 0, log.read_text()[-4000:]
        yield TAG
    finally:  # ~6 GB of layers: removed even when the build failed
        if os.environ.get("CASS_KEEP_IMAGE") != "1":
            subprocess.run([*PODMAN, "rmi", "-f", TAG, BASE], capture_output=True)
            subprocess.run([*PODMAN, "image", "prune", "-f"], capture_output=True)


def test_the_image_holds_exactly_the_locked_packages(image: str) -> None:
    frozen = podman_run("freeze", "--exclude-editable", entrypoint="pip").split("\n")
    locked = (REPO / "requirements.lock").read_text().splitlines()
    assert sorted(filter(None, frozen)) == sorted(p for p in locked if not p.startswith("#"))


def test_running_the_image_runs_cass_hpc_run_offline(image: str) -> None:
    assert "cass_hpc.run — one grid cell" in podman_run("--help")
    assert podman_run("-c", "echo $HF_HUB_OFFLINE", entrypoint="sh").strip() == "1"


def test_the_selftest_pretrains_one_step_in_the_image(image: str) -> None:
    out = podman_run("-m", "cass_hpc.selftest", entrypoint="python")
    assert "selftest passed" in out and "torch 2.14.1" in out


def test_the_images_scontrol_hands_a_requeue_to_the_wrapper(image: str) -> None:
    script = "CASS_REQUEUE_FILE=/tmp/requeue scontrol requeue 7_3 && cat /tmp/requeue"
    assert podman_run("-c", script, entrypoint="sh") == "7_3\n"


def test_the_projects_tests_pass_inside_the_image(image: str) -> None:
    args = shlex.split(os.environ.get("CASS_CONTAINER_PYTEST_ARGS", DEFAULT_PYTEST))
    start = time.monotonic()
    out = podman_run("-m", "pytest", *args, entrypoint="python", timeout=3000)
    print(f"\nin the image ({time.monotonic() - start:.0f} s): {out.strip().splitlines()[-1]}")
    assert " passed" in out.strip().splitlines()[-1]
