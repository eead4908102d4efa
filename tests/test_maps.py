"""``python -m cass_hpc.maps``: the paper's maps and the embeddings of fine-tuned cells."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from cass_hpc import maps
from cass_hpc.data.resplit import split_labels
from cass_hpc.data.shards import read_manifest
from cass_hpc.report.map_plots import maps_size
from cass_hpc.report.plots import DPI

BACKBONES = {"cnn": ("resnet10t", {}), "vit": ("vit_tiny_patch16_224", {"img_size": 32})}


def write_cell(root: Path, dataset: Path, method: str, arm: str, *, weights: bool = True) -> Path:
    """A finished cell per issue 14's contract: results.json + model.pt of a random timm net."""
    classes = list(read_manifest(dataset).classes)
    name, kwargs = BACKBONES[arm]
    cell = root / "cells" / f"{method}-{arm}-lf1-s0-k{method}{arm}"
    cell.mkdir(parents=True)
    if weights:
        torch.manual_seed(len(method) + len(arm))
        net = timm.create_model(name, num_classes=len(classes), **kwargs)
        torch.save(net.state_dict(), cell / "model.pt")
    record = {
        "schema": "cass-hpc-results/1", "key": f"k{method}{arm}", "experiment": "demo",
        "dataset": "tiny", "method": method, "arm": arm, "backbone": name,
        "label_fraction": 1.0, "seed": 0, "metrics": {"macro_f1": 0.5},
        "created": "2026-11-30T00:00:00Z", "classes": classes,
        "dataset_path": str(dataset), "image_size": 32, "backbone_kwargs": kwargs,
        "split_seed": None, "files": {"weights": "model.pt", "predictions": "predictions.npz"},
    }  # fmt: skip
    (cell / "results.json").write_text(json.dumps(record), encoding="utf-8")
    return cell


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def test_stratified_draw_keeps_the_class_distribution_and_its_seed() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    drawn = maps.stratified_draw(labels, 10, seed=3)
    assert np.bincount(labels[drawn]).tolist() == [5, 3, 2]
    assert np.array_equal(drawn, maps.stratified_draw(labels, 10, seed=3))
    assert not np.array_equal(drawn, maps.stratified_draw(labels, 10, seed=4))
    assert np.bincount(labels[maps.stratified_draw(labels, 7, seed=0)]).tolist() == [4, 2, 1]
    assert len(maps.stratified_draw(labels, 500, seed=0)) == 100  # the whole split
    multi_hot = np.array([[1, 0], [0, 1], [0, 1], [0, 0]])
    assert len(maps.stratified_draw(multi_hot, 3, seed=0)) == 3


def test_command_writes_maps_and_embeddings_of_every_method_and_skips_old_cells(
    tmp_path: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "demo"
    for method in ("cass", "supervised"):
        for arm in ("cnn", "vit"):
            write_cell(run, tiny_dataset, method, arm)
    old = write_cell(run, tiny_dataset, "dino", "cnn", weights=False)

    assert maps.main([str(run), "--samples", "4", "--device", "cpu"]) == 0

    out = run / "summary" / "maps"
    assert f"{old}: no model.pt" in capsys.readouterr().err
    columns = {"cnn": 1 + 6, "vit": 1 + 1}  # mean input + first conv and 5 stages / attention
    for arm, count in columns.items():
        width, height = maps_size(2, count)
        pixels = _pixels(out / f"maps-tiny-{arm}-lf1-s0.png")
        assert pixels.shape == (round(height * DPI), round(width * DPI), 3)
        assert pixels.std() > 0
    embeddings = _pixels(out / "embeddings-tiny-lf1-s0.png")
    assert embeddings.std() > 0 and len(np.unique(embeddings.reshape(-1, 3), axis=0)) > 4
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary behind


def test_missing_rundir_or_one_without_usable_cells_exits_2(
    tmp_path: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert maps.main([str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    write_cell(tmp_path / "old", tiny_dataset, "cass", "cnn", weights=False)
    assert maps.main([str(tmp_path / "old")]) == 2
    err = capsys.readouterr().err
    assert "no usable fine-tuned cell" in err and "Traceback" not in err


def test_evaluation_images_are_the_test_split_the_cell_was_evaluated_on(tiny_dataset: Path) -> None:
    manifest = read_manifest(tiny_dataset)
    record = {"dataset_path": str(tiny_dataset), "image_size": 32, "split_seed": None}
    packed = maps.evaluation_images(record)
    assert np.array_equal(packed.labels, split_labels(manifest, "test"))
    redrawn = maps.evaluation_images({**record, "split_seed": 1})
    assert np.array_equal(redrawn.labels, split_labels(manifest, "test", 1))
    assert redrawn[0][0].shape == (3, 32, 32)
