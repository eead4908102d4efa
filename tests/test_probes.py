"""Forward-hook maps of timm nets (cass_hpc.probes): the paper's feature and attention maps."""

from __future__ import annotations

import torch

from cass_hpc.models import ArmSpec, build_arm
from cass_hpc.probes import ATTENTION, FEATURE, attention_module, class_attention, probe


def _images(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_cnn_maps_are_the_first_conv_and_five_stages_at_input_size() -> None:
    arm = build_arm(ArmSpec("resnet18"), num_classes=4)
    maps = probe(arm, _images(), batch_size=2)
    assert maps.kind == FEATURE and not maps.message
    assert maps.names == ("conv1", "act1", "layer1", "layer2", "layer3", "layer4")
    assert maps.sizes == ((16, 16), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1))
    assert all(m.shape == (32, 32) for m in maps.maps)
    assert maps.maps[0].std() > 0


def test_class_attention_equals_timms_own_attention_probabilities() -> None:
    arm = build_arm(ArmSpec("vit_tiny_patch16_224", {"img_size": 64}), num_classes=4).eval()
    images = _images(size=64)
    _, attn = attention_module(arm.net)
    fused = attn.fused_attn
    seen: list[torch.Tensor] = []
    attn.fused_attn = False  # timm's explicit path materialises softmax(q·kᵀ·scale)
    handle = attn.attn_drop.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.no_grad():
            ours = class_attention(arm, images)
    finally:
        handle.remove()
        attn.fused_attn = fused
    expected = seen[0][:, :, 0, 1:].mean(dim=1).reshape(3, 4, 4)  # class row over the patches
    torch.testing.assert_close(ours, expected)


def test_probe_removes_its_hooks_and_leaves_fused_attention_as_it_was() -> None:
    arm = build_arm(ArmSpec("vit_tiny_patch16_224", {"img_size": 32}), num_classes=4)
    _, attn = attention_module(arm.net)
    fused = attn.fused_attn
    maps = probe(arm, _images())
    assert maps.kind == ATTENTION and maps.sizes == ((2, 2),) and maps.maps[0].shape == (32, 32)
    assert attn.fused_attn == fused
    assert not any(m._forward_hooks for m in arm.modules())


def test_transformer_without_class_token_gets_a_message_not_an_error() -> None:
    spec = ArmSpec("vit_tiny_patch16_224", {"img_size": 32, "class_token": False,
                                            "global_pool": "avg"})  # fmt: skip
    maps = probe(build_arm(spec, num_classes=4), _images())
    assert maps.kind == ATTENTION and not maps.maps
    assert "no class token" in maps.message
