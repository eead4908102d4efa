"""Backbones by timm name; weights only from a local file, never a hub."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cass_hpc.models import ArmSpec, build_arm


def test_vit_is_built_for_the_configured_image_size() -> None:
    arm = build_arm(ArmSpec("vit_tiny_patch16_224", {"img_size": 48, "depth": 1}), num_classes=7)
    assert arm(torch.rand(2, 3, 48, 48)).shape == (2, 7)


def test_local_weights_are_loaded_and_a_head_of_another_width_is_left_at_init(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    source = build_arm(ArmSpec("resnet10t"), num_classes=1000)
    weights = tmp_path / "resnet10t.pth"
    torch.save(source.net.state_dict(), weights)

    torch.manual_seed(1)
    loaded = build_arm(ArmSpec("resnet10t", pretrained=str(weights)), num_classes=4)
    src, dst = source.net.state_dict(), loaded.net.state_dict()
    assert torch.equal(src["conv1.0.weight"], dst["conv1.0.weight"])
    assert dst["fc.weight"].shape == (4, 512)


def test_missing_weights_file_is_a_clear_error_not_a_download(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found.*never downloaded"):
        build_arm(ArmSpec("resnet10t", pretrained=str(tmp_path / "nope.pth")), num_classes=2)


def test_weights_of_another_model_are_rejected_with_the_file_named(tmp_path: Path) -> None:
    weights = tmp_path / "vit.pth"
    torch.save(
        build_arm(ArmSpec("vit_tiny_patch16_224", {"depth": 1}), num_classes=2).net.state_dict(),
        weights,
    )
    with pytest.raises(ValueError, match="vit.pth: weights do not fit"):
        build_arm(ArmSpec("resnet10t", pretrained=str(weights)), num_classes=2)


def test_unknown_model_name_is_named() -> None:
    with pytest.raises(ValueError, match="'resnet_9000'"):
        build_arm(ArmSpec("resnet_9000"), num_classes=2)


def test_each_arm_normalises_with_its_own_statistics() -> None:
    cnn = build_arm(ArmSpec("resnet10t"), num_classes=2)
    vit = build_arm(ArmSpec("vit_tiny_patch16_224", {"img_size": 32, "depth": 1}), num_classes=2)
    assert not torch.equal(cnn.mean, vit.mean)  # ImageNet stats vs timm's 0.5 for augreg ViTs
