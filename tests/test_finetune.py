"""End-to-end fine-tuning: early stopping on validation loss, best weights evaluated on test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

from cass_hpc.finetune import FinetuneConfig, Objective, finetune
from cass_hpc.models import ArmSpec, build_arm


def split(n: int, seed: int) -> tuple[DataLoader, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.rand(n, 3, 16, 16, generator=g) * 0.2 + labels.view(-1, 1, 1, 1) * 0.4
    return DataLoader(TensorDataset(images, labels), batch_size=8), labels.numpy()


def test_training_stops_after_patience_epochs_without_a_better_validation_loss() -> None:
    torch.manual_seed(0)
    # no BatchNorm running statistics and lr 0: the validation loss never improves
    arm = build_arm(ArmSpec("vit_tiny_patch16_224", {"img_size": 16, "depth": 1}), num_classes=3)
    (train, labels), (val, _), (test, _) = split(24, 0), split(12, 1), split(12, 2)
    cfg = FinetuneConfig(max_epochs=20, patience=2, lr=0.0)
    result = finetune(
        arm,
        train,
        val,
        test,
        num_classes=3,
        train_labels=labels,
        cfg=cfg,
        accelerator=Accelerator(cpu=True),
    )
    assert result.best_epoch == 1 and result.epochs_run == 3 and result.stopped_early
    assert set(result.metrics) == {"loss", "macro_f1", "micro_f1", "balanced_accuracy", "auroc"}
    assert set(result.val_metrics) == set(result.metrics) and len(result.predictions) == 4
    assert len(result.history) == 3 and result.class_weights == [1.0, 1.0, 1.0]


def test_fine_tuning_learns_an_easy_task() -> None:
    torch.manual_seed(0)
    arm = build_arm(ArmSpec("resnet10t"), num_classes=3)
    (train, labels), (val, _), (test, _) = split(48, 0), split(24, 1), split(24, 2)
    result = finetune(
        arm,
        train,
        val,
        test,
        num_classes=3,
        train_labels=labels,
        cfg=FinetuneConfig(max_epochs=8, patience=8, lr=3e-3),
        accelerator=Accelerator(cpu=True),
    )
    assert result.metrics["balanced_accuracy"] > 0.6  # chance is 1/3


class Interrupt(Exception):
    """Stands in for a kill between epochs."""


class DiesAtEpoch:
    """A train loader that raises when its ``die_at``-th epoch starts (to simulate a kill)."""

    def __init__(self, loader: DataLoader, die_at: int) -> None:
        self.loader, self.die_at, self.epochs = loader, die_at, 0
        self.generator = loader.generator

    def __iter__(self):  # type: ignore[no-untyped-def]
        self.epochs += 1
        if self.epochs == self.die_at:
            raise Interrupt
        return iter(self.loader)


def shuffled(n: int, seed: int) -> tuple[DataLoader, np.ndarray]:
    loader, labels = split(n, seed)
    g = torch.Generator().manual_seed(7)
    return DataLoader(loader.dataset, batch_size=8, shuffle=True, generator=g), labels


def runner(cfg: FinetuneConfig, n_eval: int):  # type: ignore[no-untyped-def]
    """A fine-tuning of a fresh seeded resnet10t on (train, labels), checkpointing to ``ckpt``."""
    (val, _), (test, _) = split(n_eval, 1), split(n_eval, 2)

    def run(train: DataLoader | DiesAtEpoch, labels: np.ndarray, ckpt):  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        arm = build_arm(ArmSpec("resnet10t"), num_classes=3)
        return finetune(
            arm, train, val, test, num_classes=3, train_labels=labels, cfg=cfg,
            accelerator=Accelerator(cpu=True), checkpoint=ckpt,
        )  # fmt: skip

    return run


def test_resume_after_an_interruption_gives_identical_metrics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = runner(FinetuneConfig(max_epochs=4, patience=4, lr=3e-3), 12)
    train, labels = shuffled(24, 0)
    reference = run(train, labels, tmp_path / "ref.pt")

    train, labels = shuffled(24, 0)
    with pytest.raises(Interrupt):
        run(DiesAtEpoch(train, die_at=3), labels, tmp_path / "cut.pt")
    assert torch.load(tmp_path / "cut.pt", weights_only=True)["epoch"] == 2
    train, labels = shuffled(24, 0)
    resumed = run(train, labels, tmp_path / "cut.pt")
    assert resumed.metrics == reference.metrics
    assert [h["train_loss"] for h in resumed.history] == [
        h["train_loss"] for h in reference.history
    ]


def test_a_class_weighted_zero_is_named_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    labels = torch.tensor([0] * 4 + [1] * 8 + [2] * 12)
    images = torch.rand(len(labels), 3, 16, 16, generator=torch.Generator().manual_seed(0))
    train = DataLoader(TensorDataset(images, labels), batch_size=8)
    arm = build_arm(ArmSpec("vit_tiny_patch16_224", {"img_size": 16, "depth": 1}), num_classes=3)
    with caplog.at_level("WARNING", logger="cass_hpc.finetune"):
        result = finetune(
            arm, train, train, train, num_classes=3, train_labels=labels.numpy(),
            cfg=FinetuneConfig(max_epochs=1, class_weights="minmax"),
            accelerator=Accelerator(cpu=True),
        )  # fmt: skip
    assert result.class_weights[0] == 0.0
    assert "class weight 0 for class(es) [0]" in caplog.text and "inverse" in caplog.text


@pytest.mark.parametrize("counts", [[10, 30, 50], [1, 1000]])
def test_default_class_weights_give_every_class_a_weight_above_zero(counts: list[int]) -> None:
    labels = np.repeat(np.arange(len(counts)), counts)
    weight = Objective.for_labels(labels, len(counts), FinetuneConfig()).weight
    assert (weight > 0).all() and float(weight[0]) == 1.0  # class 0 is the rarest


def test_a_multilabel_label_absent_from_the_subset_does_not_stop_fine_tuning() -> None:
    labels = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 0]])  # counts 3, 2, 0
    objective = Objective.for_labels(labels, 3, FinetuneConfig())
    # the absent label is weighted like the rarest present one (label 1)
    assert objective.multilabel and objective.weight.tolist() == pytest.approx([2 / 3, 1, 1])
    logits = torch.zeros(3, 3)
    assert torch.isfinite(objective.loss(logits, torch.from_numpy(labels).float()))


def head_names(arm: torch.nn.Module) -> set[str]:
    head = {id(p) for p in arm.net.get_classifier().parameters()}
    return {name for name, p in arm.named_parameters() if id(p) in head}


def test_linear_probe_trains_only_the_head_and_leaves_batchnorm_statistics_alone() -> None:
    torch.manual_seed(0)
    arm = build_arm(ArmSpec("resnet10t"), num_classes=3)
    before = {k: v.clone() for k, v in arm.state_dict().items()}
    assert any(k.endswith("running_mean") for k in before)  # the buffers are covered too
    (train, labels), (val, _) = split(16, 0), split(8, 1)
    result = finetune(
        arm, train, val, val, num_classes=3, train_labels=labels,
        cfg=FinetuneConfig(max_epochs=2, lr=3e-2, mode="linear"),
        accelerator=Accelerator(cpu=True),
    )  # fmt: skip
    after, head = arm.state_dict(), head_names(arm)
    assert head == {"net.fc.weight", "net.fc.bias"} and result.mode == "linear"
    assert result.trained_parameters == sum(after[k].numel() for k in head)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == head  # every backbone parameter and buffer bit-identical


def test_an_unknown_finetune_mode_is_named() -> None:
    with pytest.raises(ValueError, match="finetune.mode .* got 'probe'"):
        FinetuneConfig(mode="probe")


def test_linear_probe_resumes_after_an_interruption_with_identical_metrics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = runner(FinetuneConfig(max_epochs=2, patience=2, lr=3e-2, mode="linear"), 8)
    reference = run(*shuffled(16, 0), tmp_path / "ref.pt")
    with pytest.raises(Interrupt):
        train, labels = shuffled(16, 0)
        run(DiesAtEpoch(train, die_at=2), labels, tmp_path / "cut.pt")
    resumed = run(*shuffled(16, 0), tmp_path / "cut.pt")
    assert resumed.metrics == reference.metrics and resumed.history == reference.history
