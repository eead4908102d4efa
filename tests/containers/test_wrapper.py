"""containers/apptainer-python (each job's Python in the image), containers/scontrol (the
image's requeue stand-in) and `make container` without an engine.

Apptainer cannot be installed here: a stand-in `apptainer` records its arguments and runs the
command on this machine with the environment ``--cleanenv`` leaves (``APPTAINERENV_*`` without
the prefix, nothing else), its PATH finding the image's ``scontrol`` first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "containers" / "apptainer-python"
FAKE_APPTAINER = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$FAKE_APPTAINER_ARGS"
shift  # exec
while [[ $1 == -* ]]; do
  case $1 in --bind) shift 2 ;; --pwd) cd "$2"; shift 2 ;; *) shift ;; esac
done
shift  # the image
env=()
while IFS= read -r name; do
  [[ $name == APPTAINERENV_* ]] && env+=("${name#APPTAINERENV_}=${!name}")
done < <(compgen -e)
exec env -i PATH="$FAKE_IMAGE_PATH" "${env[@]}" "$@"
"""
SLURM_JOB = {
    "SLURM_JOB_ID": "4242",
    "SLURM_ARRAY_JOB_ID": "4240",
    "SLURM_ARRAY_TASK_ID": "2",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_NTASKS": "1",
    "SLURM_JOB_NUM_NODES": "1",
    "SLURM_JOB_NODELIST": "node1",
    "SLURM_CPUS_PER_TASK": "2",
    "SUBMITIT_EXECUTOR": "slurm",
    "CUDA_VISIBLE_DEVICES": "1",
    "CASS_RUNS_DIR": "/scratch/runs",
}
HOST_ONLY = {"LD_LIBRARY_PATH": "/host/lib", "PYTHONPATH": "/host/site", "HOST_SECRET": "x"}


@pytest.fixture
def node(tmp_path: Path) -> dict[str, str]:
    """A compute node's environment: a stand-in apptainer, a recording scontrol, a job's vars."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apptainer").write_text(FAKE_APPTAINER)
    (bin_dir / "scontrol").write_text('#!/bin/sh\necho "$@" >> "$HOST_SCONTROL_LOG"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    (tmp_path / "cass.sif").write_bytes(b"")
    for folder in ("work", "data", "tmp"):
        (tmp_path / folder).mkdir()
    image_path = f"{REPO / 'containers'}:{Path(sys.executable).parent}:/usr/bin:/bin"
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path / "tmp"),
        "FAKE_APPTAINER_ARGS": str(tmp_path / "apptainer-args"),
        "FAKE_IMAGE_PATH": image_path,
        "HOST_SCONTROL_LOG": str(tmp_path / "host-scontrol"),
        **SLURM_JOB,
        **HOST_ONLY,
    }


def in_image(node: dict[str, str], code: str, *options: str) -> subprocess.CompletedProcess:
    tmp = Path(node["HOME"])
    command = [str(WRAPPER), "--image", str(tmp / "cass.sif"), *options, "--", "-c", code]
    return subprocess.run(
        command, cwd=tmp / "work", env=node, capture_output=True, text=True, timeout=60
    )


def test_a_job_sees_its_slurm_job_in_the_image_and_nothing_else_of_the_host(
    node: dict[str, str],
) -> None:
    code = (
        "import json, os, submitit\n"
        "job = submitit.JobEnvironment()\n"
        "print(json.dumps({'env': dict(os.environ), 'job': job.job_id, 'cwd': os.getcwd()}))"
    )
    tmp = Path(node["HOME"])
    proc = in_image(node, code, "--bind", f"{tmp / 'data'},{tmp / 'work' / 'sub'}")
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["job"] == "4240_2" and seen["cwd"] == str(tmp / "work")
    assert {k: seen["env"].get(k) for k in SLURM_JOB} == SLURM_JOB
    assert seen["env"]["PYTHONPATH"] == str(REPO)  # the checkout's code, not the host's path
    assert not {"LD_LIBRARY_PATH", "HOST_SECRET"} & set(seen["env"])
    assert seen["env"]["HF_HUB_OFFLINE"] == "1"  # the hub is off in every job in the image
    args = Path(node["FAKE_APPTAINER_ARGS"]).read_text().splitlines()
    binds = f"{REPO},{tmp / 'work'},{tmp / 'data'},{tmp / 'tmp'}"  # work/sub is inside work
    assert args[:7] == ["exec", "--nv", "--cleanenv", "--bind", binds, "--pwd", str(tmp / "work")]
    assert args[7:10] == [str(tmp / "cass.sif"), "python", "-c"]


def test_a_job_in_the_image_reads_the_hosts_hugging_face_cache_offline(
    node: dict[str, str],
) -> None:
    tmp = Path(node["HOME"])
    (tmp / "hf").mkdir()
    node = {**node, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "0"}
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    proc = in_image(node, code)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["HF_HOME"] == str(tmp / "hf") and seen["HF_HUB_OFFLINE"] == "1"
    args = Path(node["FAKE_APPTAINER_ARGS"]).read_text().splitlines()
    assert str(tmp / "hf") in args[4].split(","), args[4]  # bound at the same path


def test_a_requeue_asked_for_inside_the_image_is_run_on_the_node_after_python_exits(
    node: dict[str, str],
) -> None:
    code = "import submitit, sys\nsubmitit.JobEnvironment()._requeue(1)\nsys.exit(3)"
    proc = in_image(node, code)
    assert proc.returncode == 3, proc.stderr
    assert Path(node["HOST_SCONTROL_LOG"]).read_text() == "requeue 4240_2\n"
    assert "requeueing SLURM job 4240_2" in proc.stderr
    assert list((Path(node["HOME"]) / "tmp").iterdir()) == []  # the request file is gone


def test_the_images_scontrol_refuses_anything_but_a_requeue(node: dict[str, str]) -> None:
    code = "import subprocess, sys\nsys.exit(subprocess.call(['scontrol', 'show', 'job']))"
    proc = in_image(node, code)
    assert proc.returncode == 1
    assert "scontrol (cass image): only 'scontrol requeue JOBID'" in proc.stderr
    assert not Path(node["HOST_SCONTROL_LOG"]).exists()


def test_the_wrapper_survives_slurms_usr2_and_python_in_the_image_handles_it(
    node: dict[str, str],
) -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGUSR2, lambda *_: sys.exit(0))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\nsys.exit(5)"
    )
    tmp = Path(node["HOME"])
    command = [str(WRAPPER), "--image", str(tmp / "cass.sif"), "--", "-c", code]
    with subprocess.Popen(
        command, cwd=tmp, env=node, stdout=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        os.killpg(proc.pid, signal.SIGUSR2)  # SLURM signals every process of the step
        assert proc.wait(timeout=20) == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ((), "apptainer-python: no image: pass --image PATH.sif or export CASS_IMAGE"),
        (("--image", "/no/cass.sif"), "apptainer-python: /no/cass.sif: no such image file on"),
    ],
)
def test_a_missing_image_is_named_with_what_to_do(
    node: dict[str, str], options: tuple[str, ...], message: str
) -> None:
    proc = subprocess.run(
        [str(WRAPPER), *options, "--", "-c", "pass"], env=node, capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.startswith(message)


def test_make_container_without_any_engine_says_so_in_one_line(tmp_path: Path) -> None:
    for tool in ("bash", "dirname"):
        (tmp_path / tool).symlink_to(f"/usr/bin/{tool}" if tool == "dirname" else "/bin/bash")
    proc = subprocess.run(
        ["/usr/bin/make", "-s", "container"],
        cwd=REPO,
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert proc.stderr.splitlines()[0] == (
        "make container: no container engine here: install apptainer (clusters), podman or "
        "docker (see containers/README.md)"
    )
