"""The k-NN health monitor: a collapsed net scores at chance, a healthy one above it; the scores
land in pretrain.json; keep=best_knn hands over the best-scoring weights."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

from cass_hpc import store
from cass_hpc.cell import CellSpec, run_cell
from cass_hpc.collect import main as collect_main
from cass_hpc.finetune import FinetuneConfig
from cass_hpc.knn import KnnMonitor, chance_level, knn_score
from cass_hpc.methods.cass import CASS
from cass_hpc.models import ArmSpec, build_arm
from cass_hpc.pretrain import PretrainConfig, pretrain
from preprocess.__main__ import main


def clusters(n_per_class: int, classes: int, noise: float, seed: int = 0) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, 16, generator=generator)
    labels = np.repeat(np.arange(classes), n_per_class)
    features = centres[labels] + noise * torch.randn(len(labels), 16, generator=generator)
    return features, labels


def test_separable_features_score_near_one_and_noise_near_chance() -> None:
    features, labels = clusters(10, 4, noise=0.1)
    assert knn_score(features, labels) == pytest.approx(1.0)
    noise = torch.randn(200, 16, generator=torch.Generator().manual_seed(1))
    assert abs(knn_score(noise, np.arange(200) % 4) - 0.25) < 0.1


def test_a_collapsed_representation_scores_exactly_chance() -> None:
    """Features that all point one way, with differences below half precision's resolution (a
    collapsed CASS ViT: every pairwise cosine > 0.9997), give each class the same vote."""
    features, labels = clusters(10, 4, noise=0.1)
    collapsed = torch.ones(40, 16) + 1e-5 * features
    assert knn_score(collapsed, labels) == chance_level(labels) == 0.25
    imbalanced = np.array([0] * 30 + [1] * 7 + [2] * 3)  # a constant vote ignores class sizes
    assert knn_score(collapsed, imbalanced) == pytest.approx(1 / 3)


def test_multilabel_scores_each_label_and_chance_is_one_half() -> None:
    features, labels = clusters(10, 2, noise=0.1)
    noise = np.random.default_rng(0).integers(0, 2, 20)
    multi = np.stack([labels == 0, labels == 1, noise], axis=1).astype(np.int64)
    assert chance_level(multi) == 0.5
    score = knn_score(features, multi)  # two labels follow the clusters, one is noise
    assert 0.6 < score < 1.0 and knn_score(features, multi[:, :2]) == 1.0
    assert knn_score(torch.ones(20, 16), multi) == 0.5


def test_bad_input_is_refused_naming_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"got \(3, 4\) for 2 labels"):
        knn_score(torch.zeros(3, 4), np.array([0, 1]))
    with pytest.raises(ValueError, match="k=0"):
        knn_score(torch.zeros(3, 4), np.array([0, 1, 1]), k=0)


def tiny_cass(seed: int = 0) -> CASS:
    torch.manual_seed(seed)
    cnn = build_arm(ArmSpec("resnet10t"), num_classes=8)
    vit = build_arm(ArmSpec("vit_tiny_patch16_224", {"img_size": 16, "depth": 1}), num_classes=8)
    return CASS(cnn=cnn, vit=vit)


def data(n: int, seed: int) -> DataLoader:
    """Images whose mean colour is their class (a cue any net picks up)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    tint = torch.eye(4, 3)[labels].view(n, 3, 1, 1)
    images = (0.3 * torch.rand(n, 3, 16, 16, generator=generator) + 0.6 * tint).clamp(0, 1)
    return DataLoader(TensorDataset(images, labels), batch_size=8, shuffle=False)


CFG = PretrainConfig(epochs=3, batch_size=8, swa=False, knn_k=5)


def test_pretraining_records_each_nets_score_per_epoch_and_method_cass_is_unchanged(
    tmp_path: Path,
) -> None:
    accelerator = Accelerator(cpu=True)
    watched = pretrain(tiny_cass(), data(16, 0), CFG, tmp_path / "on", accelerator,
                       KnnMonitor(data(24, 1), k=5))  # fmt: skip
    record = store.read_json(tmp_path / "on" / "pretrain.json")
    assert record["knn_epochs"] == [0, 1, 2, 3] and set(record["knn"]) == {"cnn", "vit"}
    assert record["knn_chance"] == 0.25 and set(record["knn_final"]) == {"cnn", "vit"}
    assert record["kept"] == {"cnn": "last", "vit": "last"} and record["knn_s"] > 0
    # the monitor only looks: the same losses and weights without it
    plain = pretrain(tiny_cass(), data(16, 0), replace(CFG, knn_every=0), tmp_path / "off",
                     accelerator)  # fmt: skip
    assert plain.loss == watched.loss and plain.knn == {}
    for arm in ("cnn", "vit"):
        on = torch.load(tmp_path / "on" / f"{arm}.pt", weights_only=True)
        off = torch.load(tmp_path / "off" / f"{arm}.pt", weights_only=True)
        assert all(torch.equal(on[k], off[k]) for k in on)


def test_keep_best_knn_hands_over_the_best_scoring_weights(tmp_path: Path) -> None:
    cfg = replace(CFG, keep="best_knn", lr=0.05)  # a high LR: later epochs may score worse
    result = pretrain(tiny_cass(), data(16, 0), cfg, tmp_path, Accelerator(cpu=True),
                      KnnMonitor(data(24, 1), k=5))  # fmt: skip
    assert result.knn_epochs[0] == 0  # epoch 0 is recorded, never kept: the candidates follow
    for arm, scores in result.knn.items():
        assert result.knn_final[arm] == max([*scores[1:], result.knn_final[arm]])
        if result.kept[arm] != "last":
            epoch = int(result.kept[arm].split()[1])
            assert result.knn_final[arm] == scores[result.knn_epochs.index(epoch)]


class StartScoresBest(KnnMonitor):
    """The monitor, but its first look (epoch 0) scores 2.0, above any real score."""

    looks = 0

    def score(self, arms, accelerator):  # type: ignore[no-untyped-def]
        self.looks += 1
        return dict.fromkeys(arms, 2.0) if self.looks == 1 else super().score(arms, accelerator)


def test_keep_best_knn_never_hands_over_the_starting_weights(tmp_path: Path) -> None:
    """Epoch 0 is the yardstick, not a candidate: keep=best_knn behaves as before it existed."""
    cfg = replace(CFG, epochs=1, keep="best_knn")
    result = pretrain(
        tiny_cass(),
        data(16, 0),
        cfg,
        tmp_path,
        Accelerator(cpu=True),
        StartScoresBest(data(24, 1), k=5),
    )
    assert result.knn == {"cnn": [2.0, result.knn["cnn"][1]], "vit": [2.0, result.knn["vit"][1]]}
    assert set(result.kept.values()) <= {"last", "epoch 1"} and max(result.knn_final.values()) <= 1


def weights(arm: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in arm.net.state_dict().items()}


class FirstLook(KnnMonitor):
    """The monitor, keeping a copy of each net's weights as it first scores them."""

    first: dict[str, dict[str, torch.Tensor]] | None = None

    def score(self, arms, accelerator):  # type: ignore[no-untyped-def]
        if self.first is None:
            self.first = {a: weights(arm) for a, arm in arms.items()}
        return super().score(arms, accelerator)


def test_epoch_0_scores_the_starting_weights_before_any_optimiser_step(tmp_path: Path) -> None:
    method = tiny_cass()
    start = {a: weights(arm) for a, arm in method.arms.items()}
    monitor = FirstLook(data(24, 1), k=5)
    result = pretrain(
        method, data(16, 0), replace(CFG, epochs=1), tmp_path, Accelerator(cpu=True), monitor
    )
    assert result.knn_epochs == [0, 1] and all(len(v) == 2 for v in result.knn.values())
    assert monitor.first is not None and set(monitor.first) == set(start) == {"cnn", "vit"}
    for arm, before in start.items():
        assert all(torch.equal(before[k], monitor.first[arm][k]) for k in before), arm
        after = weights(method.arms[arm])  # one epoch moved them: a later look would differ
        assert any(not torch.equal(before[k], after[k]) for k in before), arm


def test_a_resumed_pretraining_does_not_score_epoch_0_again(tmp_path: Path) -> None:
    cfg = replace(CFG, keep_checkpoint=True)
    first = pretrain(
        tiny_cass(),
        data(16, 0),
        replace(cfg, epochs=2),
        tmp_path,
        Accelerator(cpu=True),
        KnnMonitor(data(24, 1), k=5),
    )
    resumed = pretrain(
        tiny_cass(seed=5),
        data(16, 0),
        cfg,
        tmp_path,
        Accelerator(cpu=True),
        KnnMonitor(data(24, 1), k=5),
    )
    assert resumed.knn_epochs == [0, 1, 2, 3]  # epochs 0-2 from the checkpoint, 3 scored now
    assert {a: v[:3] for a, v in resumed.knn.items()} == first.knn


def test_keep_best_knn_without_the_monitor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="best_knn needs the k-NN monitor"):
        pretrain(tiny_cass(), data(16, 0), replace(CFG, keep="best_knn"), tmp_path,
                 Accelerator(cpu=True))  # fmt: skip
    with pytest.raises(ValueError, match="'newest'"):
        pretrain(tiny_cass(), data(16, 0), replace(CFG, keep="newest"), tmp_path,
                 Accelerator(cpu=True))  # fmt: skip


@pytest.fixture(scope="module")
def shapes64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "shapes64"
    assert main(["synthetic", "shapes", str(out), "--per-class", "100", "--image-size", "64"]) == 0
    return out


@pytest.mark.slow
def test_monitor_falls_to_chance_when_cass_collapses_and_not_with_cass_plus(
    shapes64: Path, tmp_path: Path
) -> None:
    """The demo's pair at 64 px: the paper's CASS collapses its ViT within a few epochs (the
    k-NN score reaches chance and stays); CASS+ does not. The scores reach pretrain.json, the
    collector's pretraining table and its plot."""
    arms = {
        "cnn": ArmSpec("resnet10t"),
        "vit": ArmSpec("vit_tiny_patch16_224", {"img_size": 64}),
    }
    records = {}
    for method in ("cass", "cass_plus"):
        spec = CellSpec(
            experiment="monitor", store_root=tmp_path / "runs", dataset_path=shapes64,
            image_size=64, method=method, pretrain=PretrainConfig(epochs=5, knn_k=10),
            method_params={}, arms=arms, out_dim=1000, arm="vit", label_fraction=1.0, seed=0,
            finetune=FinetuneConfig(max_epochs=1), threads=2,
        )  # fmt: skip
        records[method] = run_cell(spec)["pretrain"]
    chance = records["cass"]["knn_chance"]
    assert chance == 0.25
    collapsed, healthy = records["cass"]["knn"]["vit"], records["cass_plus"]["knn"]["vit"]
    assert collapsed[-2:] == [chance, chance] and records["cass"]["knn_final"]["vit"] == chance
    assert records["cass"]["knn_epochs"][0] == 0  # the random-init start, then epochs 1-5
    assert min(healthy[1:]) > chance + 0.05 and records["cass_plus"]["knn_final"]["vit"] > chance
    pretrain_json = next((tmp_path / "runs" / "pretrain").glob("cass-cnn-vit-*/pretrain.json"))
    assert store.read_json(pretrain_json)["knn"]["vit"] == collapsed

    assert collect_main([str(tmp_path / "runs"), "--out", str(tmp_path / "summary")]) == 0
    table = (tmp_path / "summary" / "pretrain_time.md").read_text()
    assert "k-NN CNN / ViT (chance)" in table and "/ 0.25 (0.25)" in table  # CASS's ViT
    assert list((tmp_path / "summary" / "plots").glob("*pretrain*.png"))


class Flat(torch.nn.Module):
    """An 'arm' whose features are its pixels (the monitor only calls ``features``)."""

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


def test_a_class_with_one_validation_image_is_left_out_and_none_scorable_turns_it_off() -> None:
    """Found by a new user: with one validation image per class every leave-one-out score was
    0.000 (below chance), whatever the net; a single such class dragged the score down."""
    labels = torch.tensor([0, 0, 1, 1, 2])
    images = torch.eye(3)[labels].repeat_interleave(4, 1).view(5, 3, 2, 2)  # class = colour
    monitor = KnnMonitor(DataLoader(TensorDataset(images, labels), batch_size=8), k=5)
    assert monitor.left_out == [2] and monitor.chance == 0.5
    assert monitor.score({"net": Flat()}, Accelerator(cpu=True)) == {"net": 1.0}  # was 2/3
    one_each = TensorDataset(images[[0, 2, 4]], labels[[0, 2, 4]])
    with pytest.raises(ValueError, match=r">= 2 classes with >= 2 validation images each; .*"
                       r"\[1, 1, 1\] image\(s\) per class"):  # fmt: skip
        KnnMonitor(DataLoader(one_each, batch_size=8))
