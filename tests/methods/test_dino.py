"""DINO (Caron et al. 2021): loss, centering, EMA teacher, multi-crop, last-layer freeze."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cass_hpc.data.transforms import MultiCrop
from cass_hpc.methods import PRETRAIN_METHODS, Progress
from cass_hpc.methods.dino import dino_loss, teacher_momentum, teacher_temperature, update_center
from cass_hpc.models import ArmSpec

TINY = {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "local_crops": 2,
        "local_crop_size": 16}  # fmt: skip


def test_dino_loss_matches_a_hand_computed_value() -> None:
    teacher = [torch.tensor([[1.0, 0.0]])]
    student = [torch.tensor([[9.0, 9.0]]), torch.tensor([[2.0, 0.0]])]  # crop 0 = teacher's view
    loss = dino_loss(student, teacher, torch.zeros(2), student_temp=1.0, teacher_temp=1.0)
    q0 = math.e / (math.e + 1)
    expected = math.log(1 + math.e**2) - 2 * q0  # H(q, softmax([2, 0])); crop 0 skipped
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_dino_loss_centres_and_sharpens_the_teacher() -> None:
    teacher, student = [torch.tensor([[1.0, 0.0]])], [torch.zeros(1, 2), torch.zeros(1, 2)]
    # any teacher distribution against a uniform student costs log 2 ...
    assert float(dino_loss(student, teacher, torch.zeros(2))) == pytest.approx(math.log(2))
    # ... while a confident student agreeing with the sharpened teacher costs little
    sharp = dino_loss([torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])], teacher, torch.zeros(2))
    centred = dino_loss(
        [torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])], teacher, torch.tensor([1.0, 0.0])
    )
    assert float(sharp) < 0.01 < float(centred)


def test_same_view_pairs_are_skipped() -> None:
    a, b = torch.tensor([[5.0, 0.0]]), torch.tensor([[0.0, 5.0]])
    # teacher and student agree on each view, disagree across views: only cross pairs count
    loss = dino_loss([a, b], [a, b], torch.zeros(2), student_temp=1.0, teacher_temp=1.0)
    assert float(loss) > 4.0


def test_center_is_an_ema_of_the_teacher_batch_mean() -> None:
    center = update_center(torch.zeros(2), [torch.tensor([[2.0, 4.0]]), torch.zeros(1, 2)], 0.9)
    assert center.tolist() == pytest.approx([0.1, 0.2])


def test_schedules_follow_the_dino_paper() -> None:
    assert teacher_momentum(0.0) == pytest.approx(0.996)
    assert teacher_momentum(1.0) == pytest.approx(1.0)
    assert teacher_temperature(1, 0.04, 0.07, 30) == pytest.approx(0.04)
    assert teacher_temperature(16, 0.04, 0.07, 30) == pytest.approx(0.055)
    assert teacher_temperature(31, 0.04, 0.07, 30) == pytest.approx(0.07)


def test_multi_crop_gives_two_global_then_local_crops() -> None:
    crops = MultiCrop(32, 16, 3)(np.zeros((40, 40, 3), dtype=np.uint8))
    assert [tuple(c.shape) for c in crops] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 3


def make_dino(arm: str = "vit"):  # type: ignore[no-untyped-def]
    spec = (
        ArmSpec("vit_tiny_patch16_224", {"img_size": 32, "depth": 1})
        if arm == "vit"
        else ArmSpec("resnet10t")
    )
    return PRETRAIN_METHODS["dino"].build({arm: spec}, 0, TINY)


def views(batch: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(batch, 3, 32, 32, generator=g) for _ in range(2)] + [
        torch.rand(batch, 3, 16, 16, generator=g) for _ in range(2)
    ]


@pytest.mark.parametrize("arm", ["cnn", "vit"])
def test_only_the_student_gets_gradients_and_the_teacher_is_its_ema(arm: str) -> None:
    torch.manual_seed(0)
    dino = make_dino(arm)
    student, teacher = dino.arms[arm], dino.teacher
    before = [p.detach().clone() for p in teacher.parameters()]
    progress = Progress(epoch=2, step=1, steps_per_epoch=10, epochs=4)
    out = dino.training_step(views(), progress)
    out.loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.5)
    dino.after_optimizer_step(progress)
    m = teacher_momentum(progress.fraction, 0.996)
    for t0, t1, s in zip(before, teacher.parameters(), student.parameters(), strict=True):
        assert torch.allclose(t1, m * t0 + (1 - m) * s, atol=1e-6)


def test_last_layer_is_frozen_during_the_first_epoch_only() -> None:
    dino = make_dino("vit")
    last = dino.arms["vit"].head.last_layer.parametrizations.weight.original1
    for epoch, frozen in ((1, True), (2, False)):
        progress = Progress(epoch=epoch, step=1, steps_per_epoch=1, epochs=3)
        dino.zero_grad()
        dino.training_step(views(), progress).loss.backward()
        dino.before_optimizer_step(progress)
        assert (last.grad is None) == frozen


def test_fine_tuning_starts_from_the_teacher_backbone() -> None:
    dino = make_dino("cnn")
    assert dino.trained_arms()["cnn"] is dino.teacher.backbone
