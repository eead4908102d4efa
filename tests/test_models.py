"""Backbones by timm name: random init, timm's pretrained path from the HF cache (offline), or a
local file; never a hub."""

from __future__ import annotations

import collections
import pickle
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


def _load_error(weights: Path) -> str:
    """The one-line ValueError a resnet10t gets from ``weights``, checked for torch's advice."""
    with pytest.raises(ValueError) as info:
        build_arm(ArmSpec("resnet10t", pretrained=str(weights)), num_classes=2)
    message = str(info.value)
    assert message.startswith(f"{weights}: ") and "\n" not in message, message
    assert "weights_only" not in message and "resnet10t" in message, message
    return message


def test_an_unreadable_weights_file_is_named_without_torchs_weights_only_advice(
    tmp_path: Path,
) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"garbage, not a checkpoint\x00\x01" * 4)
    message = _load_error(garbage)
    assert "not a torch.save file of tensors" in message
    assert message.endswith(
        "expected a state dict of tensors for timm model 'resnet10t' "
        "(torch.save(model.state_dict(), FILE), or .safetensors)"
    )
    truncated = tmp_path / "truncated.pth"
    torch.save({"w": torch.zeros(3)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    assert "truncated or corrupt" in _load_error(truncated)
    safetensors = tmp_path / "garbage.safetensors"
    safetensors.write_bytes(b"garbage, not a checkpoint")
    assert "not a readable safetensors file" in _load_error(safetensors)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([1, 2, 3], "holds a list, not a state dict"),
        (torch.zeros(3), "holds a Tensor, not a state dict"),
        ({"fc.weight": 3, "epoch": 1}, "entry 'fc.weight' is an int, not a tensor"),
    ],
)
def test_a_weights_file_that_is_not_a_state_dict_of_tensors_is_named(
    tmp_path: Path, content: object, expected: str
) -> None:
    weights = tmp_path / "other.pth"
    torch.save(content, weights)
    message = _load_error(weights)
    assert expected in message and "expected a state dict of tensors" in message, message


def test_a_pickle_of_python_objects_is_not_unpickled(tmp_path: Path) -> None:
    weights = tmp_path / "counter.pth"
    weights.write_bytes(pickle.dumps(collections.Counter(conv=1)))
    assert "Python objects besides tensors" in _load_error(weights)


def test_a_state_dict_of_another_model_lists_the_keys_that_do_not_fit(tmp_path: Path) -> None:
    weights = tmp_path / "vit.pth"
    vit = build_arm(ArmSpec("vit_tiny_patch16_224", {"depth": 1}), num_classes=2)
    torch.save(vit.net.state_dict(), weights)
    message = _load_error(weights)
    assert "do not fit timm model 'resnet10t'" in message
    assert "missing " in message and "'conv1.0.weight'" in message, message
    assert "unexpected " in message and "'cls_token'" in message, message


def test_unknown_model_name_is_named() -> None:
    with pytest.raises(ValueError, match="'resnet_9000'"):
        build_arm(ArmSpec("resnet_9000"), num_classes=2)


def test_each_arm_normalises_with_its_own_statistics() -> None:
    cnn = build_arm(ArmSpec("resnet10t"), num_classes=2)
    vit = build_arm(ArmSpec("vit_tiny_patch16_224", {"img_size": 32, "depth": 1}), num_classes=2)
    assert not torch.equal(cnn.mean, vit.mean)  # ImageNet stats vs timm's 0.5 for augreg ViTs


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache this process reads (the hub client read HF_HUB_CACHE at
    import, so its constant is pointed here), with the hub switched off."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_imagenet_init_loads_the_cached_file_through_timm_with_our_head_at_our_size(
    hub_cache: Path,
) -> None:
    from hub_fixtures import DEMO_TAGS, write_demo_cache
    from safetensors.torch import load_file

    files = write_demo_cache(hub_cache)
    vit = ArmSpec("vit_tiny_patch16_224", {"img_size": 32, "depth": 1}, init="imagenet",
                  tag=DEMO_TAGS["vit"])  # fmt: skip
    cnn = ArmSpec("resnet10t", init="imagenet", tag=DEMO_TAGS["cnn"])
    for arm, spec in (("vit", vit), ("cnn", cnn)):
        torch.manual_seed(123)  # a random init that cannot match the file by chance
        net = build_arm(spec, num_classes=5, arm=arm).net
        own, saved = net.state_dict(), load_file(str(files[arm]))
        head = str(net.pretrained_cfg["classifier"])
        body = [k for k in saved if not k.startswith(head + ".") and k != "pos_embed"]
        assert body and all(torch.equal(own[k], saved[k]) for k in body), arm
        assert own[f"{head}.weight"].shape[0] == 5  # our head, not the file's 1000 classes
        assert saved[f"{head}.weight"].shape[0] == 1000
    out = build_arm(vit, num_classes=5, arm="vit")(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 5)
    vit_net = build_arm(vit, num_classes=5, arm="vit").net
    # the 224-px file's 14x14 position grid, resampled by timm to 32 px (2x2) + the class token
    assert load_file(str(files["vit"]))["pos_embed"].shape[1] == 197
    assert vit_net.state_dict()["pos_embed"].shape[1] == 5


def test_a_tag_missing_from_the_cache_names_arm_tag_cache_and_the_fetch_command(
    hub_cache: Path,
) -> None:
    spec = ArmSpec("resnet10t", init="imagenet", tag="resnet10t.c3_in1k")
    with pytest.raises(ValueError) as info:
        build_arm(spec, num_classes=2, arm="cnn")
    message = str(info.value)
    assert "\n" not in message
    for part in ("cnn arm", "resnet10t.c3_in1k", str(hub_cache),
                 "python -m cass_hpc.weights fetch --tag resnet10t.c3_in1k"):  # fmt: skip
        assert part in message, (part, message)


@pytest.mark.parametrize(
    ("tag", "match"),
    [(None, "needs model.cnn.tag"), ("resnet18.a1_in1k", "not a tag of model.cnn.name=resnet10t"),
     ("resnet10t.nope", "unknown timm pretrained tag")],
)  # fmt: skip
def test_a_bad_imagenet_tag_is_refused_naming_the_key(
    hub_cache: Path, tag: str | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        build_arm(ArmSpec("resnet10t", init="imagenet", tag=tag), num_classes=2, arm="cnn")


def test_item4_a_text_file_given_as_weights_is_one_line_not_a_key_error(tmp_path: Path) -> None:
    text = tmp_path / "weights.pth"
    text.write_text("hello, I am not a checkpoint\n")  # was: KeyError: 101 from inside torch
    assert _load_error(text) == (
        f"{text}: not a torch.save file of tensors (another format, or it pickles Python "
        "objects besides tensors, which are never unpickled); expected a state dict of tensors "
        "for timm model 'resnet10t' (torch.save(model.state_dict(), FILE), or .safetensors)"
    )
