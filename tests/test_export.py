"""``python -m cass_hpc.export``: a cell's or a pretraining's net as a plain timm state dict that
timm loads by itself and that reproduces what the toolkit computed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from cass_hpc.cell import CellSpec, run_cell
from cass_hpc.data.dataset import ShardDataset
from cass_hpc.data.shards import read_manifest
from cass_hpc.data.transforms import eval_transform
from cass_hpc.export import main
from cass_hpc.finetune import FinetuneConfig
from cass_hpc.models import ArmSpec, build_arm
from cass_hpc.pretrain import PretrainConfig

VIT = ArmSpec("vit_tiny_patch16_224", {"img_size": 32, "depth": 1})


@pytest.fixture(scope="module")
def cass_cell(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CASS pretraining (1 epoch) and the ViT fine-tuned from it (1 epoch): the store root."""
    root = tmp_path_factory.mktemp("export") / "runs"
    spec = CellSpec(
        experiment="export", store_root=root, dataset_path=tiny_dataset, image_size=32,
        method="cass", pretrain=PretrainConfig(epochs=1, batch_size=8, knn_every=0),
        method_params={}, arms={"cnn": ArmSpec("resnet10t"), "vit": VIT}, out_dim=16, arm="vit",
        label_fraction=1.0, seed=0, finetune=FinetuneConfig(max_epochs=1, batch_size=8),
        threads=2,
    )  # fmt: skip
    run_cell(spec)
    return root


def _card(out: Path) -> dict:
    return json.loads(out.with_suffix(".json").read_text())


def test_an_exported_cell_loads_in_plain_timm_and_reproduces_its_test_predictions(
    cass_cell: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    cell = next(cass_cell.glob("cells/*"))
    out = tmp_path / "vit.pth"
    assert main([str(cell), str(out)]) == 0
    card = _card(out)
    net = timm.create_model(
        card["timm_name"], num_classes=card["num_classes"], checkpoint_path=str(out),
        **card["timm_kwargs"],
    ).eval()  # fmt: skip
    mean, std = (torch.tensor(card[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    test = ShardDataset(read_manifest(tiny_dataset), "test", eval_transform(card["image_size"]))
    images = torch.stack([test[i][0] for i in range(len(test))])
    with torch.no_grad():  # batches of 8, as the cell evaluated
        logits = torch.cat([net((batch - mean) / std) for batch in images.split(8)])
    saved = np.load(cell / "predictions.npz")["test_probs"]
    assert (logits.argmax(1).numpy() == saved.argmax(1)).all()
    assert np.array_equal(logits.softmax(1).numpy(), saved)  # the same floats
    assert card["classes"] == list(read_manifest(tiny_dataset).classes) and card["num_classes"] == 4


def test_a_pretraining_exports_each_arm_as_a_backbone_without_its_projection_head(
    cass_cell: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    pretraining = next(cass_cell.glob("pretrain/*"))
    out = tmp_path / "cnn.safetensors"
    assert main([str(pretraining), str(out), "--arm", "cnn"]) == 0
    card = _card(out)
    assert card["num_classes"] == 0 and card["source"]["kind"] == "pretraining"
    net = timm.create_model(card["timm_name"], num_classes=0, checkpoint_path=str(out)).eval()
    same = build_arm(ArmSpec("resnet10t", {}, str(pretraining / "cnn.pt")), num_classes=16).eval()
    images = torch.rand(2, 3, 32, 32)
    mean, std = (torch.tensor(card[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        assert torch.equal(net((images - mean) / std), same.features(images))


def test_export_refuses_unclear_or_unsafe_requests_in_one_line(
    cass_cell: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pretraining = next(cass_cell.glob("pretrain/*"))
    assert main([str(pretraining), str(tmp_path / "x.pth")]) == 2
    assert "trained cnn, vit: say which with --arm" in capsys.readouterr().err
    assert main([str(tmp_path), str(tmp_path / "x.pth")]) == 2
    assert "neither a fine-tuned cell" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "x.pth")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    (tmp_path / "taken.pth").write_bytes(b"mine")
    assert main([str(pretraining), str(tmp_path / "taken.pth"), "--arm", "vit"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "taken.pth").read_bytes() == b"mine"


def test_item3_the_card_never_takes_a_run_store_name_and_out_stays_outside_every_run_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = tmp_path / "runs" / "demo" / "cells" / "cass-vit-lf1-s0-abc"
    other = tmp_path / "old" / "pretrain" / "cass-cnn-vit-def"  # another store's stage
    for folder, record in ((cell, "results.json"), (other, "pretrain.json")):
        folder.mkdir(parents=True)
        (folder / record).write_text('{"kept": true}')
    before = sorted(tmp_path.rglob("*"))
    refusals = {
        cell / "results.pth": f"OUT {cell / 'results.pth'}: its card would be named "
        "results.json, the name of a run-store record; name OUT otherwise (e.g. model.pth)",
        tmp_path / "STATE.pt": f"OUT {tmp_path / 'STATE.pt'}: its card would be named "
        "STATE.json, the name of a run-store record; name OUT otherwise (e.g. model.pth)",
        cell / "vit.pth": f"OUT {cell / 'vit.pth'} lies inside the run store "
        f"{tmp_path / 'runs' / 'demo'}; export writes outside it (e.g. exports/{cell.name}.pth)",
        other / "x" / "vit.pth": f"OUT {other / 'x' / 'vit.pth'} lies inside the run store "
        f"{tmp_path / 'old'}; export writes outside it (e.g. exports/{cell.name}.pth)",
        tmp_path / "vit.SAFETENSORS": f"OUT {tmp_path / 'vit.SAFETENSORS'}: timm reads "
        "safetensors only from a name ending in lowercase .safetensors; name it vit.safetensors",
        tmp_path / "vit.JSON": f"OUT {tmp_path / 'vit.JSON'} must be the weights file "
        "(e.g. model.pth), not the card",
    }
    for out, line in refusals.items():
        assert main([str(cell), str(out), "--overwrite"]) == 2
        assert capsys.readouterr().err == f"error: {line}\n"
    assert sorted(tmp_path.rglob("*")) == before
    assert (cell / "results.json").read_text() == '{"kept": true}'


def _fake_cell(root: Path, backbone: str = "resnet10t") -> Path:
    """A cell folder as a grid leaves it (what export reads of it), without running one."""
    cell = root / "runs" / "demo" / "cells" / "c"
    cell.mkdir(parents=True)
    record = {
        "backbone": backbone,
        "backbone_kwargs": {},
        "classes": ["a", "b"],
        "arm": "cnn",
        "image_size": 32,
    }
    (cell / "results.json").write_text(json.dumps(record))
    return cell


def test_item4_export_reads_weights_with_the_one_reader_and_names_each_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = (
        "expected a state dict of tensors for timm model 'resnet10t' "
        "(torch.save(model.state_dict(), FILE), or .safetensors)"
    )
    cell, out = _fake_cell(tmp_path), tmp_path / "out" / "x.pth"
    (cell / "model.pt").write_text("not a checkpoint")  # was: KeyError from inside torch
    assert main([str(cell), str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: {cell / 'model.pt'}: not a torch.save file of tensors (another format, or it "
        f"pickles Python objects besides tensors, which are never unpickled); {expected}\n"
    )
    torch.save({"w": torch.zeros(3)}, cell / "model.pt")
    (cell / "model.pt").write_bytes((cell / "model.pt").read_bytes()[:60])
    assert main([str(cell), str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: {cell / 'model.pt'}: truncated or corrupt (torch cannot open it); {expected}\n"
    )
    (tmp_path / "out").mkdir()
    assert main([str(cell), str(tmp_path / "out"), "--overwrite"]) == 2
    assert capsys.readouterr().err == (
        f"error: OUT {tmp_path / 'out'} is a folder; give the weights file to write "
        f"(e.g. {tmp_path / 'out' / 'model.pth'})\n"
    )
    assert not out.exists()


def test_item4_export_names_an_unknown_timm_model_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = _fake_cell(tmp_path, backbone="not_a_model")
    torch.save({"w": torch.zeros(3)}, cell / "model.pt")
    assert main([str(cell), str(tmp_path / "x.pth")]) == 2
    assert capsys.readouterr().err == (
        f"error: {cell}: its record names timm model 'not_a_model', which timm "
        f"{timm.__version__} cannot build (Unknown model (not_a_model))\n"
    )


def test_item9_the_card_says_how_to_read_the_output_sigmoid_and_threshold_for_multi_label(
    tmp_path: Path,
) -> None:
    """Issue 27 item 9: a multi-label head needs a sigmoid per label, not a softmax, and the
    card names the threshold the cell's test metrics used; a single-label one says softmax."""
    net = timm.create_model("resnet10t", pretrained=False, num_classes=2)
    for multilabel, threshold, expected in [
        (True, 0.4, "each its own yes/no (multi-label, no softmax): a label is present when "
         "sigmoid(logit) > 0.4 (the threshold its test metrics used)"),
        (False, None, "2 logits, one per class in `classes` order: softmax for probabilities, "
         "argmax"),
    ]:  # fmt: skip
        cell = _fake_cell(tmp_path / str(multilabel))
        record = json.loads((cell / "results.json").read_text())
        record.update(multilabel=multilabel, threshold=threshold)
        (cell / "results.json").write_text(json.dumps(record))
        torch.save(net.state_dict(), cell / "model.pt")
        out = tmp_path / f"{multilabel}.pth"
        assert main([str(cell), str(out)]) == 0
        card = _card(out)
        assert expected in card["output"], card["output"]
        assert card["threshold"] == threshold
