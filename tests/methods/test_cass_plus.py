"""CASS+ (ours): VICReg's terms between a CNN's and a ViT's projections of two views; what it hands
to fine-tuning is the backbone alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from augmented import Augmented
from torch.utils.data import DataLoader

from cass_hpc.methods import METHODS, method_entry
from cass_hpc.methods.cass_plus import CASSPlusConfig, covariance_penalty, vicreg_loss
from cass_hpc.models import ArmSpec, build_arm
from cass_hpc.pretrain import PretrainConfig, pretrain

ARMS = {
    "cnn": ArmSpec("resnet10t"),
    "vit": ArmSpec("vit_tiny_patch16_224", {"img_size": 16, "depth": 1}),
}


def test_covariance_penalty_is_zero_for_decorrelated_dims_and_positive_otherwise() -> None:
    decorrelated = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert float(covariance_penalty(decorrelated)) == pytest.approx(0.0)
    correlated = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [2.0, 2.0], [-2.0, -2.0]])
    assert float(covariance_penalty(correlated)) > 1.0


def test_vicreg_loss_punishes_collapse_that_the_cass_loss_rewards() -> None:
    torch.manual_seed(0)
    spread_out = torch.randn(32, 8) * 2
    collapsed = torch.ones(32, 8)
    assert float(vicreg_loss(collapsed, collapsed)) > 49  # both variance hinges at ~1, weight 25
    assert float(vicreg_loss(spread_out, spread_out)) < float(vicreg_loss(collapsed, collapsed))
    with pytest.raises(ValueError, match="one shape"):
        vicreg_loss(torch.ones(4, 8), torch.ones(4, 6))


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="views must be 1 or 2, got 3"):
        CASSPlusConfig(views=3)


def test_pretraining_trains_both_nets_and_hands_over_backbones_that_fine_tuning_loads(
    tmp_path: Path,
) -> None:
    assert method_entry("cass_plus").pretrains and not method_entry("cass_plus").per_arm
    build = METHODS["cass_plus"].build
    assert build is not None
    torch.manual_seed(0)
    method = build(ARMS, 1000, {"projector_hidden": 32, "projector_dim": 16})
    images = torch.randint(0, 256, (16, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    images = images.to(torch.uint8)  # as the shards hold them
    crops = method.train_transform(16)
    views = [torch.stack(v) for v in zip(*(crops(img) for img in images), strict=True)]
    out = method.training_step(views)
    assert set(out.embeddings) == {"cnn", "vit"} and out.embeddings["vit"].shape == (16, 16)
    out.loss.backward()
    for arm in ("cnn", "vit"):  # gradients reach both backbones and their projectors
        net = method.arms[arm]
        assert all(p.grad is not None for p in net.projector.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.net.parameters())

    data = Augmented(images, crops)
    cfg = PretrainConfig(epochs=2, batch_size=8, swa_start=0.5, knn_every=0)
    result = pretrain(method, DataLoader(data, batch_size=8), cfg, tmp_path, Accelerator(cpu=True))
    assert result.method == "cass_plus" and len(result.loss) == 2
    for arm, spec in ARMS.items():  # SWA-averaged backbones, no projector, load for fine-tuning
        saved = torch.load(tmp_path / f"{arm}.pt", weights_only=True)
        assert not any(k.startswith("projector") for k in saved)
        build_arm(ArmSpec(spec.name, spec.kwargs, str(tmp_path / f"{arm}.pt")), num_classes=4)
