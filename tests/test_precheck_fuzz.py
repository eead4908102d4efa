"""Issue 27: a fuzz-style test of the grid's pre-check.

Every key a stage reads (the top level, ``pretrain``, ``finetune``, ``speed``, ``model``, and
each method's ``method.params``) is given a value of the wrong type ("xyz") and, where it is a
number, one out of its range (-1 or 0, by key): the launchers' pre-check (``spec_from_config``
then ``plan_grid``, what ``stage_launcher.plan`` runs before anything is submitted) must refuse
each in one line naming the key. A key that accepts any string is listed in ``FREE`` with why.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from cass_hpc.plan import plan_grid
from cass_hpc.run import spec_from_config

CONF = str(Path(__file__).resolve().parents[1] / "conf")
METHODS = sorted(p.stem for p in Path(CONF, "method").glob("*.yaml"))
SECTIONS = ("pretrain", "finetune", "speed", "model", "method.params", "dataset")
TOP = ("arm", "label_fraction", "seed", "split_seed", "device", "precision", "threads",
       "keep_weights", "paper_compat", "image_size")  # fmt: skip
FREE = {  # keys whose any string is a valid value, and why
    "dataset.name": "a label for the run store's records",
    "model.cnn.tag": "a timm weights tag, read only by init=imagenet (checked there)",
    "model.vit.tag": "a timm weights tag, read only by init=imagenet (checked there)",
    "model.cnn.init": "set by the init group (random | imagenet | local)",
    "model.vit.init": "set by the init group (random | imagenet | local)",
}
NEGATIVE_OK = {  # numeric keys where -1 is a valid value, and why
    "seed": "any integer seeds the run",
    "split_seed": "any integer draws a split",
}
ZERO_BAD = {  # keys whose 0 is the out-of-range probe (-1 is refused by type or range anyway)
}


def _leaves(cfg: DictConfig, prefix: str) -> dict[str, object]:
    node = OmegaConf.select(cfg, prefix)
    if node is None:
        return {}
    flat = OmegaConf.to_container(node, resolve=True)
    out: dict[str, object] = {}

    def walk(value: object, key: str) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(v, f"{key}.{k}")
        elif not isinstance(value, (dict, list)):  # scalars (and null)
            out[key] = value

    walk(flat, prefix)
    return out


def _cases() -> list[tuple[str, str, str]]:
    """(method, key, bad value) for every scalar key a stage reads, per method."""
    cases = []
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        for method in METHODS:
            cfg = compose("config", overrides=[f"method={method}"])
            keys = {k: v for s in SECTIONS for k, v in _leaves(cfg, s).items()}
            keys.update({k: OmegaConf.select(cfg, k) for k in TOP})
            for key, value in sorted(keys.items()):
                if key in FREE or key.endswith((".pretrained", ".path")):
                    continue  # files: their own tests (weights, data path)
                shared = not key.startswith("method.")
                if shared and method != "cass":  # the loop's keys: once, with the default
                    continue
                cases.append((method, key, "xyz"))
                numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
                if numeric and key not in NEGATIVE_OK:
                    cases.append((method, key, "0" if key in ZERO_BAD else "-1"))
    return cases


CASES = _cases()


def _value(text: str) -> object:
    return int(text) if text.lstrip("-").isdigit() else text  # as Hydra parses an override


@functools.cache
def _base(tiny: Path, method: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=[f"method={method}", f"dataset.path={tiny}",
                                            "label_fraction=1.0"])  # fmt: skip


def _refusal(tiny: Path, method: str, key: str, value: str) -> str | None:
    """The pre-check's refusal of ``key=value`` (None: accepted): the config composed once per
    method, the key set as a command-line override would set it."""
    cfg = copy.deepcopy(_base(tiny, method))
    OmegaConf.update(cfg, key, _value(value), force_add=True)
    overrides = [f"method={method}", f"{key}={value}"]
    try:
        spec = spec_from_config(cfg)
        plan_grid([(overrides, spec)])
    except ValueError as err:
        return str(err)
    return None


def test_the_fuzz_covers_every_section_and_method() -> None:
    keys = {k for _, k, _ in CASES}
    assert {k.split(".")[0] for k in keys} >= {"pretrain", "finetune", "speed", "model", "method"}
    with_params = {m for m, k, _ in CASES if k.startswith("method.params.")}
    assert with_params == set(METHODS) - {"supervised"}  # every method but supervised has params
    assert len(CASES) > 100


def test_item_fuzz_every_bad_value_is_refused_by_the_pre_check_naming_its_key(
    tiny_dataset: Path,
) -> None:
    """Before anything is submitted, one line naming the key (its last part at least)."""
    passed, unnamed = [], []
    for method, key, value in CASES:
        message = _refusal(tiny_dataset, method, key, value)
        if message is None:
            passed.append(f"method={method} {key}={value}")
        elif key.rsplit(".", 1)[-1] not in message:
            unnamed.append(f"method={method} {key}={value}: {message}")
    assert not passed, "accepted by the pre-check:\n" + "\n".join(passed)
    assert not unnamed, "refused without naming the key:\n" + "\n".join(unnamed)


@pytest.mark.parametrize("method", ["simclr"])
def test_the_probe_itself_accepts_the_defaults(tiny_dataset: Path, method: str) -> None:
    """A control: the same path with a good value raises nothing (the fuzz is not vacuous)."""
    assert _refusal(tiny_dataset, method, "seed", "3") is None


@pytest.mark.slow  # ~7 s; every case runs in-process above
def test_a_grid_the_pre_check_refuses_runs_nothing_on_the_local_launcher(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """One of the fuzz's finds through the real local launcher: one line naming the key, exit 2,
    and the run store holds nothing (no stage folder, no launch record, no sweep folder). The
    SLURM twin: tests/test_slurm.py (fuzz-method-param; squeue stays empty)."""
    from tests.conftest import run_module

    runs = tmp_path / "runs"
    proc = run_module(
        "cass_hpc.run", "-m", "experiment=demo", f"runs_dir={runs}", f"dataset.path={tiny_dataset}",
        "method=dino", "seed=0,1", "method.params.student_temp=-1", timeout=300,
    )  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "method.params.student_temp must be > 0, got -1" in errors[0], errors
    assert "Traceback" not in proc.stderr
    assert not [p for p in runs.rglob("*") if p.is_file()], sorted(runs.rglob("*"))
