"""cass_hpc.selftest, the image's %test: what it imports and how it names a failure. (The whole
self-test, a real cell, runs in the image in test_image_build.py and at every image build.)"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from cass_hpc import selftest


def test_every_declared_dependency_maps_to_the_modules_a_job_imports() -> None:
    modules = selftest.dependency_modules()
    assert modules["torch"] == ["functorch", "torch", "torchgen"]
    assert modules["pillow"] == ["PIL"] and modules["hydra-core"] == ["hydra"]
    assert modules["hydra-submitit-launcher"] == ["hydra_plugins"]  # a namespace: hence
    assert "hydra_plugins.hydra_submitit_launcher.submitit_launcher" in selftest.EXTRA_MODULES


def test_a_declared_dependency_that_is_not_installed_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.metadata, "requires", lambda _: ["torch", "no-such-pkg>=1"])
    with pytest.raises(selftest.SelftestError, match="^dependency no-such-pkg .* not installed"):
        selftest.dependency_modules()


def test_a_failing_stage_is_reported_in_one_line_with_its_last_error(tmp_path: Path) -> None:
    code = "import sys; sys.exit('boom: no data')"
    with pytest.raises(selftest.SelftestError) as failed:
        selftest._run(["-c", code], tmp_path, "pack the synthetic dataset", timeout_s=60)
    assert str(failed.value) == "pack the synthetic dataset: exit status 1: boom: no data"
