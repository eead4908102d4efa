"""Focal loss and class weights for fine-tuning (CASS App. F.3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cass_hpc.losses import class_weights, focal_loss, sigmoid_focal_loss


def test_focal_loss_with_gamma_zero_is_cross_entropy() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(10, 4), torch.randint(0, 4, (10,))
    assert float(focal_loss(logits, targets, gamma=0.0)) == pytest.approx(
        float(F.cross_entropy(logits, targets)), rel=1e-6
    )


def test_focal_loss_down_weights_easy_examples() -> None:
    easy = torch.tensor([[10.0, 0.0]])
    hard = torch.tensor([[0.0, 0.0]])
    target = torch.tensor([0])
    ratio_focal = float(focal_loss(easy, target)) / float(focal_loss(hard, target))
    ratio_ce = float(F.cross_entropy(easy, target)) / float(F.cross_entropy(hard, target))
    assert ratio_focal < ratio_ce * 1e-3


def test_class_weights_scale_each_sample_by_its_class() -> None:
    logits, targets = torch.zeros(2, 2), torch.tensor([0, 1])
    w = torch.tensor([1.0, 0.0])
    assert float(focal_loss(logits, targets, weight=w)) == pytest.approx(
        float(focal_loss(logits[:1], targets[:1])) / 2, rel=1e-6
    )


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        ("minmax", [0.0, 0.5, 1.0]),
        ("frequency", [0.2, 0.6, 1.0]),
        ("inverse", [1.0, 1 / 3, 0.2]),
        ("none", [1.0, 1.0, 1.0]),
    ],
)
def test_class_weight_schemes(scheme: str, expected: list[float]) -> None:
    assert class_weights([10, 30, 50], scheme).tolist() == pytest.approx(expected)


@pytest.mark.parametrize("counts", [[10, 30, 50], [1, 1000], [50, 10, 30]])
def test_default_class_weights_give_every_class_a_weight_and_the_rarest_one(
    counts: list[int],
) -> None:
    weights = class_weights(counts)
    assert (weights > 0).all() and float(weights[counts.index(min(counts))]) == 1.0


def test_inverse_weights_an_absent_class_like_the_rarest_present_one() -> None:
    assert class_weights([0, 10, 20], "inverse").tolist() == [1.0, 1.0, 0.5]
    assert class_weights([0, 0], "inverse").tolist() == [1.0, 1.0]


def test_minmax_weights_of_a_balanced_set_are_ones() -> None:
    assert class_weights([7, 7, 7], "minmax").tolist() == [1.0, 1.0, 1.0]


def test_unknown_scheme_is_named() -> None:
    with pytest.raises(ValueError, match="'softmax'"):
        class_weights([1, 2], "softmax")


def test_sigmoid_focal_loss_with_gamma_zero_is_binary_cross_entropy() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 5), (torch.rand(6, 5) > 0.5).float()
    assert float(sigmoid_focal_loss(logits, targets, gamma=0.0)) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits, targets)), rel=1e-6
    )


def test_sigmoid_focal_loss_weights_each_label() -> None:
    logits, targets = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])
    only_first = sigmoid_focal_loss(logits, targets, weight=torch.tensor([1.0, 0.0]))
    assert float(only_first) == pytest.approx(float(sigmoid_focal_loss(logits, targets)) / 2)
