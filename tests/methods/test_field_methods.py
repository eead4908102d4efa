"""The field's single-architecture methods (SimCLR, VICReg, BYOL, MAE, from lightly): each
pretrains one arm through the one loop, its head dropped, and hands fine-tuning a backbone that
loads; bad parameters and an arm a method cannot pretrain are refused before anything runs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from augmented import Augmented
from torch.utils.data import DataLoader

from cass_hpc.methods import METHODS, method_entry
from cass_hpc.methods.base import Progress
from cass_hpc.models import ArmSpec, build_arm
from cass_hpc.pretrain import PretrainConfig, pretrain

ARMS = {
    "cnn": ArmSpec("resnet10t"),
    "vit": ArmSpec("vit_tiny_patch16_224", {"img_size": 16, "patch_size": 4, "depth": 1}),
}
SMALL = {  # narrow heads: the test is about the wiring, not the widths
    "simclr": {"projector_hidden": 32, "projector_dim": 16},
    "vicreg": {"projector_hidden": 32, "projector_dim": 32},
    "byol": {"projector_hidden": 32, "projector_dim": 16},
    "mae": {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2},
}
CASES = [("simclr", "cnn"), ("simclr", "vit"), ("vicreg", "cnn"), ("vicreg", "vit"),
         ("byol", "cnn"), ("byol", "vit"), ("mae", "vit")]  # fmt: skip


def _images(n: int = 16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 16, 16), generator=generator).to(torch.uint8)


@pytest.mark.parametrize(("name", "arm"), CASES)
def test_a_method_pretrains_its_arm_and_hands_over_a_backbone_fine_tuning_loads(
    name: str, arm: str, tmp_path: Path
) -> None:
    entry = method_entry(name)
    assert entry.pretrains and entry.per_arm and entry.build is not None
    torch.manual_seed(0)
    method = entry.build({arm: ARMS[arm]}, 1000, SMALL[name])
    start = {k: v.clone() for k, v in method.trained_arms()[arm].net.state_dict().items()}
    images = _images()
    loader = DataLoader(Augmented(images, method.train_transform(16)), batch_size=8)
    cfg = PretrainConfig(epochs=1, batch_size=8, swa=False, knn_every=0)
    result = pretrain(method, loader, cfg, tmp_path, Accelerator(cpu=True))
    assert result.method == name and len(result.loss) == 1
    assert torch.isfinite(torch.tensor(result.loss)).all() and set(result.spread) == {arm}
    saved = torch.load(tmp_path / f"{arm}.pt", weights_only=True)
    assert set(saved) == set(start)  # the backbone only: no head, decoder or predictor
    assert any(not torch.equal(saved[k], start[k]) for k in start)  # and it was trained
    loaded = build_arm(ArmSpec(**{**vars(ARMS[arm]), "pretrained": str(tmp_path / f"{arm}.pt")}),
                       num_classes=4)  # fmt: skip
    assert loaded(torch.rand(2, 3, 16, 16)).shape == (2, 4)


def test_byols_target_follows_the_online_net_by_its_momentum() -> None:
    build = METHODS["byol"].build
    assert build is not None
    method = build({"cnn": ARMS["cnn"]}, 1000, {**SMALL["byol"], "momentum": 0.5})
    online, target = method.arms["cnn"], method.target
    assert not any(p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    before = copy.deepcopy(target.state_dict())
    method.after_optimizer_step(Progress(epoch=1, step=1, steps_per_epoch=10, epochs=1))
    key = "net.conv1.0.weight"
    moved = target.state_dict()[key] - before[key]
    expected = 0.5 * (online.state_dict()[key] - before[key])  # m = 0.5 at the first step
    assert torch.allclose(moved, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [("simclr", {"temperature": 0}, "temperature must be > 0"),
     ("mae", {"mask_ratio": 1.0}, r"mask_ratio must be in \(0, 1\)"),
     ("mae", {"decoder_dim": 10, "decoder_heads": 4}, "must divide decoder_dim"),
     ("byol", {"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
     ("vicreg", {"variance": -1.0}, r"variance and covariance \(VICReg weights\) must be >= 0"),
     ("simclr", {"temprature": 0.1}, "unexpected keyword argument 'temprature'")],
)  # fmt: skip
def test_a_bad_parameter_is_refused_by_the_check_before_any_net_is_built(
    name: str, params: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        method_entry(name).check(name, "vit", params, ARMS["vit"])


def test_mae_refuses_the_cnn_arm_a_net_that_is_not_a_vit_and_a_mask_that_hides_every_patch(
) -> None:  # fmt: skip
    mae = method_entry("mae")
    with pytest.raises(ValueError, match="pretrains the vit arm only, got arm=cnn .add arm=vit"):
        mae.check("mae", "cnn", {}, ARMS["cnn"])
    with pytest.raises(ValueError, match="timm VisionTransformer"):  # r50_densenet161's slot
        mae.check("mae", "vit", {}, ArmSpec("densenet121"))
    small = ArmSpec("vit_tiny_patch16_224", {"img_size": 32})  # 2 × 2 patches
    mae.check("mae", "vit", {"mask_ratio": 0.75}, small)  # one patch stays visible
    with pytest.raises(ValueError, match="mask_ratio=0.9 leaves none of the image's 4 patches"):
        mae.check("mae", "vit", {"mask_ratio": 0.9}, small)
    build = METHODS["mae"].build
    assert build is not None
    with pytest.raises(ValueError, match="timm VisionTransformer"):
        build({"vit": ArmSpec("resnet10t")}, 1000, {})  # and in the job, should it get there
