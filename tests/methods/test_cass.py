"""cass_loss numerics (paper eq. 1) and the CASS method's gradient flow."""

from __future__ import annotations

import pytest
import torch

from cass_hpc.collapse import spread
from cass_hpc.methods.cass import CASS, CASSConfig, cass_loss, variance_hinge
from cass_hpc.models import ArmSpec, build_arm


def test_identical_vectors_give_zero_loss() -> None:
    x = torch.randn(8, 32)
    assert float(cass_loss(x, x)) == pytest.approx(0.0, abs=1e-6)


def test_opposite_vectors_give_loss_four() -> None:
    x = torch.randn(8, 32)
    assert float(cass_loss(x, -x)) == pytest.approx(4.0, abs=1e-6)


def test_orthogonal_vectors_give_loss_two() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[0.0, 3.0], [5.0, 0.0]])
    assert float(cass_loss(a, b)) == pytest.approx(2.0, abs=1e-6)


def test_loss_is_scale_invariant_and_symmetric() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(16, 10), torch.randn(16, 10)
    base = float(cass_loss(a, b))
    assert float(cass_loss(7.5 * a, 0.01 * b)) == pytest.approx(base, rel=1e-5)
    assert float(cass_loss(b, a)) == pytest.approx(base, rel=1e-6)
    assert 0.0 < base < 4.0


def test_loss_is_batch_mean_of_per_sample_terms() -> None:
    torch.manual_seed(1)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    per_sample = [
        2 - 2 * torch.nn.functional.cosine_similarity(a[i], b[i], dim=0) for i in range(5)
    ]
    assert float(cass_loss(a, b)) == pytest.approx(float(sum(per_sample) / 5), rel=1e-5)


def test_mismatched_shapes_are_rejected_with_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 5\)"):
        cass_loss(torch.zeros(4, 3), torch.zeros(4, 5))


def test_gradients_reach_both_real_timm_nets() -> None:
    torch.manual_seed(0)
    cnn = build_arm(ArmSpec("resnet10t"), num_classes=16)
    vit = build_arm(ArmSpec("vit_tiny_patch16_224", {"img_size": 32, "depth": 2}), num_classes=16)
    method = CASS(cnn=cnn, vit=vit)
    out = method.training_step(torch.rand(4, 3, 32, 32))
    out.loss.backward()
    for arm_name, arm in method.trained_arms().items():
        grads = [p.grad for p in arm.parameters() if p.requires_grad]
        assert all(g is not None for g in grads), arm_name
        assert sum(float(g.abs().sum()) for g in grads) > 0, arm_name
    assert set(out.embeddings) == {"cnn", "vit"}


def test_spread_is_zero_for_collapsed_outputs_and_positive_otherwise() -> None:
    same = torch.randn(1, 8).repeat(6, 1) * torch.arange(1, 7).view(6, 1)  # one direction
    assert spread(same) == pytest.approx(0.0, abs=1e-5)
    assert spread(torch.randn(64, 8)) > 1.0


def test_head_activation_changes_the_loss() -> None:
    torch.manual_seed(0)
    cnn = build_arm(ArmSpec("resnet10t"), num_classes=8)
    vit = build_arm(ArmSpec("vit_tiny_patch16_224", {"img_size": 32, "depth": 1}), num_classes=8)
    images = torch.rand(4, 3, 32, 32)
    losses = {
        act: float(
            CASS(cnn, vit, CASSConfig(head_activation=act)).training_step(images).loss.detach()
        )
        for act in ("none", "softmax", "sigmoid")
    }
    assert len({round(v, 6) for v in losses.values()}) == 3


def test_variance_hinge_is_zero_for_spread_outputs_and_positive_when_collapsed() -> None:
    assert float(variance_hinge(torch.randn(256, 8) * 3)) == pytest.approx(0.0, abs=1e-3)
    assert float(variance_hinge(torch.ones(16, 8))) == pytest.approx(1.0, abs=0.02)


def test_unknown_options_are_named() -> None:
    with pytest.raises(ValueError, match="'tanh'"):
        CASSConfig(head_activation="tanh")
    with pytest.raises(ValueError, match="'magic'"):
        CASSConfig(anti_collapse="magic")
