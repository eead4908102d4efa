"""ImageNet init, the paper's protocol, as a cluster user runs it: ``weights fetch`` on a login
node (here: from a hub on loopback serving real safetensors files), ``verify`` offline, then
cells that start from the Hugging Face cache with the hub switched off; a missing weight or a
missing network is one line, before anything is made."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from pathlib import Path

import pytest
from conftest import TINY_BUDGET, run_module
from hub_fixtures import DEMO_TAGS, loopback_hub, write_cached_weights, write_demo_cache

from cass_hpc import weights
from cass_hpc.cell import CellSpec, cell_key, pretrain_key
from cass_hpc.data.shards import read_manifest
from cass_hpc.finetune import FinetuneConfig
from cass_hpc.models import ArmSpec
from cass_hpc.pretrain import PretrainConfig
from cass_hpc.pretrained import go_offline, sha256

CELL = [*TINY_BUDGET, "+model.vit.kwargs.depth=1", "threads=2", "keep_weights=false"]


def _env(home: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "HF_HOME": str(home), **more}


def test_fetch_verify_and_a_cell_that_starts_from_the_fetched_weights_offline(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = write_demo_cache(tmp_path / "upstream")  # what the hub holds: both demo tags
    files = {
        (f"timm/{DEMO_TAGS[a]}", "model.safetensors"): p.read_bytes() for a, p in served.items()
    }
    home = tmp_path / "hf"
    grid = ["init=imagenet", "experiment=demo"]  # the demo grid's pair, from ImageNet
    with loopback_hub(files) as endpoint:
        online = _env(home, HF_HUB_OFFLINE="0", HF_ENDPOINT=endpoint, HF_HUB_DISABLE_XET="1")
        fetched = run_module("cass_hpc.weights", "fetch", *grid, env=online)
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    manifest = json.loads((home / "cass-hpc-weights.json").read_text())
    assert set(manifest) == set(DEMO_TAGS.values())  # exactly the grid's two tags
    assert {m["sha256"] for m in manifest.values()} == {sha256(p) for p in served.values()}

    offline = _env(home)  # no HF_HUB_OFFLINE: the toolkit switches the hub off itself
    verified = run_module("cass_hpc.weights", "verify", *grid, env=offline)
    assert verified.returncode == 0 and verified.stdout.count(" ok ") == 2, verified.stdout

    runs = tmp_path / "runs"
    cell = run_module("cass_hpc.run", "init=imagenet", "method=cass", "arm=vit",
                      "label_fraction=1.0", f"dataset.path={tiny_dataset}", f"runs_dir={runs}",
                      *CELL, env={**offline, "HF_HUB_OFFLINE": "0"})  # fmt: skip
    assert cell.returncode == 0, cell.stderr[-3000:]
    (record,) = [json.loads(p.read_text()) for p in runs.rglob("results.json")]
    for arm, tag in DEMO_TAGS.items():
        start = record["init"][arm]
        assert start["init"] == f"imagenet:{tag}", start
        assert start["sha256"] == manifest[tag]["sha256"]
        assert record["pretrain"]["init"][arm] == start  # the pretraining records it too
    assert record["environment"]["HF_HUB_OFFLINE"] == "1"  # set inside the stage
    assert record["libraries"]["timm"] and record["libraries"]["lightly"]  # what computed it

    # a cached file changed on disk: verify names it
    vit_file = Path(record["init"]["vit"]["file"])
    vit_file.write_bytes(vit_file.read_bytes()[:-8] + b"\0" * 8)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("CASS_WEIGHTS_MANIFEST", str(home / "cass-hpc-weights.json"))
    rows = weights.check(weights.wanted(grid, []), hash_files=True)
    assert [r[2].split()[0] for r in rows] == ["ok", "sha256"], rows


def test_fetch_without_a_network_says_so_in_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    home = tmp_path / "hf"
    env = _env(home, HF_HUB_OFFLINE="0", HF_ENDPOINT=f"http://127.0.0.1:{closed}")
    proc = run_module("cass_hpc.weights", "fetch", "init=imagenet", timeout=60, env=env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach"), proc.stderr
    assert not [p for p in home.rglob("*") if p.is_file()]  # no manifest, no partial file
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # a user's export
    assert weights.main(["fetch", "init=imagenet"]) == 1
    assert "error: HF_HUB_OFFLINE is set" in capsys.readouterr().err


def test_a_missing_weight_refuses_run_and_run_m_before_anything_is_made(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    common = ["init=imagenet", f"dataset.path={tiny_dataset}", f"runs_dir={runs}", *CELL]
    for mode in ([], ["-m", "method=cass,supervised"]):
        proc = run_module("cass_hpc.run", *mode, *common, env=_env(tmp_path / "empty"))
        assert proc.returncode == 2, proc.stderr[-2000:]
        said = proc.stdout + proc.stderr  # a single run logs its error, a grid prints it
        errors = [line for line in said.splitlines() if "error" in line]
        assert len(errors) == 1 and "are not in the Hugging Face cache" in errors[0], said
        fetch = f"fetch --tag {DEMO_TAGS['cnn']} --tag {DEMO_TAGS['vit']}"  # both arms at once
        assert f"python -m cass_hpc.weights {fetch}" in errors[0], errors[0]
        assert "Traceback" not in said
        assert not runs.exists() or not any(runs.rglob("*")), sorted(runs.rglob("*"))


def test_a_changed_starting_file_gives_new_keys_and_random_init_keeps_its_keys(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    write_demo_cache(cache)
    arms = {"cnn": ArmSpec("resnet10t", init="imagenet", tag=DEMO_TAGS["cnn"]),
            "vit": ArmSpec("vit_tiny_patch16_224", {"img_size": 32, "depth": 1},
                           init="imagenet", tag=DEMO_TAGS["vit"])}  # fmt: skip
    spec = CellSpec(
        experiment="k", store_root=tmp_path / "runs", dataset_path=tiny_dataset, image_size=32,
        method="cass", pretrain=PretrainConfig(epochs=1), method_params={}, arms=arms,
        out_dim=16, arm="cnn", label_fraction=1.0, seed=0, finetune=FinetuneConfig(max_epochs=1),
    )  # fmt: skip
    manifest = read_manifest(tiny_dataset)
    before = cell_key(spec, manifest), pretrain_key(spec, manifest)
    write_cached_weights(cache, DEMO_TAGS["vit"], seed=1, depth=1)  # new ViT weights, same tag
    after = cell_key(spec, manifest), pretrain_key(spec, manifest)
    assert before[0] != after[0] and before[1] != after[1]  # the CNN cell's pretraining too
    random = {a: dataclasses.replace(s, init="random") for a, s in arms.items()}
    plain = {a: ArmSpec(s.name, s.kwargs) for a, s in arms.items()}  # as before init existed
    assert cell_key(dataclasses.replace(spec, arms=random), manifest) == cell_key(
        dataclasses.replace(spec, arms=plain), manifest
    )


def test_go_offline_switches_the_hub_off_in_this_process_and_its_children(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    go_offline()
    assert constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"


def test_init_local_needs_a_file_only_for_the_arms_a_cell_starts_from(tmp_path: Path) -> None:
    from cass_hpc.pretrained import check_starting_weights

    weights = tmp_path / "cnn.pt"
    weights.write_bytes(b"state")
    cnn = ArmSpec("resnet10t", init="local", pretrained=str(weights))
    vit = ArmSpec("vit_tiny_patch16_224", init="local")  # weights.vit not set
    check_starting_weights({"cnn": cnn})  # a supervised CNN cell: the ViT file is not needed
    with pytest.raises(ValueError, match=r"init=local needs weights.vit=FILE"):
        check_starting_weights({"cnn": cnn, "vit": vit})  # CASS starts from both
    missing = dataclasses.replace(cnn, pretrained=str(tmp_path / "nope.pt"))
    with pytest.raises(ValueError, match=r"weights.cnn=.*nope.pt: no such file"):
        check_starting_weights({"cnn": missing})


def test_the_grid_names_only_the_arms_its_cells_start_from() -> None:
    def arms(*overrides: str) -> set[str]:
        return {arm for arm, _spec in weights.grid_arms(["init=imagenet", *overrides])}

    assert arms("method=dino", "arm=cnn") == {"cnn"}  # one backbone per run
    assert arms("method=supervised", "arm=vit") == {"vit"}
    assert arms("method=cass", "arm=cnn") == {"cnn", "vit"}  # the pair pretrains both
    assert arms("-m", "method=simclr", "arm=cnn,vit") == {"cnn", "vit"}
