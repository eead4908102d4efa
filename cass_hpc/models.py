"""Backbones by timm name, wrapped with their own input normalisation.

Weights never come from a hub: ``pretrained`` is a path to a local file (a timm/torch state
dict, ``.pth``/``.pt``/``.bin`` or ``.safetensors``) or None for random init (PAPER.md: App. D.4
finds random init about as good as ImageNet init; it is our offline default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ArmSpec:
    """One net of a method, as configured in ``conf/model/*.yaml``."""

    name: str  # timm model name, e.g. "resnet50", "vit_base_patch16_384"
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra timm kwargs (img_size for ViTs)
    pretrained: str | None = None  # local weights file; None = random init


class Arm(nn.Module):
    """A timm net preceded by its own normalisation (per-model mean/std from timm's config).

    The augmented view is a float tensor in [0, 1]; each arm normalises it its own way, so CASS
    can feed the *same* view to a CNN and a ViT that expect different statistics.
    """

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return self.net((images - self.mean) / self.std)

    def reset_head(self, num_classes: int) -> None:
        """Replace the classifier by ``Linear(features, num_classes)`` (fine-tuning, §4.2)."""
        self.net.reset_classifier(num_classes)


def build_arm(spec: ArmSpec, *, num_classes: int, dynamic_size: bool = False) -> Arm:
    """Build ``spec.name`` from timm (random init) and load ``spec.pretrained`` if given.

    ``num_classes`` is the head's width: the CASS output dimension during pretraining (paper:
    timm's 1000-way classifier logits), the number of classes when fine-tuning, 0 for pooled
    features (DINO puts its own head on top). ``dynamic_size`` lets a ViT take inputs of other
    sizes than it was built for (DINO's local crops); CNNs take any size anyway.
    """
    if not timm.is_model(spec.name):
        raise ValueError(
            f"unknown timm model {spec.name!r}; list names with "
            "`python -c \"import timm; print(timm.list_models('*vit*'))\"`"
        )
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    kwargs = dict(spec.kwargs)
    net = None
    if dynamic_size:
        try:
            net = timm.create_model(
                spec.name, pretrained=False, num_classes=num_classes,
                dynamic_img_size=True, dynamic_img_pad=True, **kwargs,
            )  # fmt: skip
        except TypeError:  # the architecture has no such option: it takes any size already
            net = None
    if net is None:
        net = timm.create_model(spec.name, pretrained=False, num_classes=num_classes, **kwargs)
    if spec.pretrained:
        load_weights(net, spec.pretrained)
    cfg = net.pretrained_cfg
    return Arm(net, tuple(cfg.get("mean", (0.5, 0.5, 0.5))), tuple(cfg.get("std", (0.5, 0.5, 0.5))))


def load_weights(net: nn.Module, path: str | Path) -> None:
    """Load a local state dict into ``net``; a classifier of another width is left at init.

    Raises ``ValueError`` naming the file if it is missing or its keys do not fit the model.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(
            f"pretrained weights file not found: {path} (weights are never downloaded)"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    own = net.state_dict()
    # A head of another width (1000-way ImageNet vs. our classes) is dropped and left at init.
    state = {k: v for k, v in state.items() if not (k in own and own[k].shape != v.shape)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    head = str(net.pretrained_cfg.get("classifier", "head"))
    missing = [k for k in missing if not k.startswith(head + ".")]
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not fit {type(net).__name__} (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}); is it the right timm model name?"
        )
