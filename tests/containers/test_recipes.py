"""The image recipes (containers/cass.def, containers/Containerfile) against requirements.lock.

Apptainer cannot run here, so its definition is checked as text: its sections, that it installs
the lock file itself (so the image holds exactly the lock), and that every version it names
(base image Python, version labels, any ``pkg==x``) matches the lock: a pin changed on one side
only fails here. The Containerfile the same way, and the two must build the same image.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from container_recipes import (
    DEF,
    LOCK,
    REPO,
    Lock,
    Recipe,
    declared_dependencies,
    def_sections,
    drift,
    read_containerfile,
    read_def,
)

RECIPES = {"cass.def": read_def, "Containerfile": read_containerfile}
LOCK_IN_IMAGE = "/opt/cass-hpc/requirements.lock"


@pytest.fixture(params=sorted(RECIPES))
def recipe(request: pytest.FixtureRequest) -> Recipe:
    return RECIPES[request.param]()


def test_definition_has_every_section_and_the_header_takes_the_base_from_an_argument() -> None:
    header, sections = def_sections(DEF.read_text())
    assert header == {"bootstrap": "docker", "from": "{{ BASE_IMAGE }}"}
    required = {"arguments", "files", "post", "environment", "runscript", "test", "help", "labels"}
    assert required <= set(sections), f"missing: {sorted(required - set(sections))}"
    assert all(sections[name].strip() for name in required)
    assert re.search(r"^\s*BASE_IMAGE=\S+", sections["arguments"], re.MULTILINE)
    assert "python -m cass_hpc.selftest" in sections["test"]


def test_each_recipe_installs_the_lock_file_itself_and_checks_pip_freeze_against_it(
    recipe: Recipe,
) -> None:
    assert recipe.files["requirements.lock"] == LOCK_IN_IMAGE
    installs = re.findall(r"pip install ([^\n&]*)", recipe.run)
    assert len(installs) == 2, installs  # the lock, then the project without dependencies
    assert installs[0].split()[-2:] == ["-r", LOCK_IN_IMAGE]
    assert installs[1].split()[-3:] == ["--no-deps", "-e", "/opt/cass-hpc"]
    assert f"grep -v '^#' {LOCK_IN_IMAGE}" in recipe.run and "diff /tmp/lock.txt" in recipe.run


def test_every_version_the_recipes_name_matches_the_lock(recipe: Recipe) -> None:
    assert drift(recipe, Lock.parse(LOCK.read_text())) == []


def test_a_pin_changed_in_the_lock_only_is_reported_by_name() -> None:
    text = LOCK.read_text()
    lock = Lock.parse(text.replace(f"torch=={Lock.parse(text).pins['torch']}", "torch==9.9.9"))
    assert drift(read_def(), lock) == ["label cass.torch: 2.14.1, but requirements.lock says 9.9.9"]
    lock = Lock.parse(text.replace("Python 3.11", "Python 3.12"))
    assert "base image python: 3.11, but requirements.lock says 3.12" in drift(read_def(), lock)


def test_a_version_pinned_in_a_recipe_but_not_locked_is_reported() -> None:
    recipe = read_containerfile()
    recipe = replace(recipe, text=recipe.text + "\nRUN pip install numpy==1.0.0 somepkg==2\n")
    assert drift(recipe, Lock.parse(LOCK.read_text())) == [
        "numpy==1.0.0, but requirements.lock says " + Lock.parse(LOCK.read_text()).pins["numpy"],
        "somepkg==2 is pinned but not in requirements.lock",
    ]
    pytorch_base = replace(recipe, base_image="pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime")
    assert drift(pytorch_base, Lock.parse(LOCK.read_text()))[-1].endswith("not a python:X.Y image")


def test_definition_and_containerfile_build_the_same_image() -> None:
    apptainer, oci = read_def(), read_containerfile()
    assert apptainer.base_image == oci.base_image
    assert apptainer.files == oci.files
    assert apptainer.labels == {k: v for k, v in oci.labels.items()}
    assert apptainer.env["HF_HUB_OFFLINE"] == oci.env["HF_HUB_OFFLINE"] == "1"
    assert {k: v.replace("$PATH", "") for k, v in apptainer.env.items()} == {
        k: v.replace("$PATH", "") for k, v in oci.env.items()
    }
    assert apptainer.entry == 'exec python -m cass_hpc.run "$@"'
    assert oci.entry == "python -m cass_hpc.run"


def test_images_hold_what_the_project_installs_and_the_build_context_lets_it_in(
    recipe: Recipe,
) -> None:
    project = (REPO / "pyproject.toml").read_text()  # tomllib is 3.11+, the project 3.10+
    include = re.search(r"^include = \[(.*)\]$", project, re.MULTILINE)
    readme = re.search(r'^readme = "(.*)"$', project, re.MULTILINE)
    assert include and readme, "pyproject.toml: packages.find include / readme not found"
    packages = {p.strip(' "*') for p in include[1].split(",")}
    needed = {"pyproject.toml", readme[1], "requirements.lock", "conf"}
    assert needed | packages <= set(recipe.files)
    assert all((REPO / source).exists() for source in recipe.files)
    ignore = (REPO / "containers" / "Containerfile.dockerignore").read_text().splitlines()
    assert {line[1:] for line in ignore if line.startswith("!")} == set(recipe.files)


def test_every_dependency_the_project_declares_is_in_the_lock() -> None:
    """The image installs the lock and the project with --no-deps: an unlocked one is absent."""
    declared = declared_dependencies((REPO / "pyproject.toml").read_text())
    assert {"torch", "hydra-submitit-launcher", "submitit", "pytest"} <= declared
    missing = sorted(declared - Lock.parse(LOCK.read_text()).names())
    assert missing == [], f"declared in pyproject.toml, not in requirements.lock: {missing}"


def test_the_lock_points_at_no_local_file_an_image_build_cannot_reach() -> None:
    references = Lock.parse(LOCK.read_text()).references
    local = {name: url for name, url in references.items() if url.startswith("file:")}
    assert local == {}, f"requirements.lock installs local files (pin index versions): {local}"
