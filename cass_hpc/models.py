"""Backbones by timm name, wrapped with their own input normalisation.

Weights never come from a hub: ``pretrained`` is a path to a local file (a timm/torch state
dict, ``.pth``/``.pt``/``.bin`` or ``.safetensors``) or None for random init (PAPER.md: App. D.4
finds random init about as good as ImageNet init; it is our offline default).
"""

from __future__ import annotations

import pickle
import warnings
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

    def features(self, images: Tensor) -> Tensor:
        """The pooled features before the classifier (what fine-tuning keeps of the net)."""
        net = self.net
        return net.forward_head(net.forward_features((images - self.mean) / self.std), True)

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
        load_weights(net, spec.pretrained, spec.name)
    return Arm(net, *normalisation(net))


def normalisation(net: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel (mean, std) a timm net expects its [0, 1] input normalised with."""
    cfg = net.pretrained_cfg
    return tuple(cfg.get("mean", (0.5, 0.5, 0.5))), tuple(cfg.get("std", (0.5, 0.5, 0.5)))


def load_weights(net: nn.Module, path: str | Path, model: str | None = None) -> None:
    """Load the local weights file ``path`` into ``net`` (timm model ``model``); a classifier of
    another width is left at init. Every weights file is read here, tensors only
    (``weights_only=True``: a file pickling other Python objects is refused, never unpickled).

    Raises ``ValueError``, one line naming the file and what was expected, if it is missing,
    unreadable, not a state dict of tensors, or its keys do not fit the model.
    """
    model = model or str(net.pretrained_cfg.get("architecture", type(net).__name__))
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(
            f"pretrained weights file not found: {path} (weights are never downloaded)"
        )
    expected = (
        f"expected a state dict of tensors for timm model {model!r} "
        f"(torch.save(model.state_dict(), FILE), or .safetensors)"
    )
    state = _read_weights(path, expected)
    for wrapper in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds {_a(type(state).__name__)}, not a state dict; {expected}")
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise ValueError(
                f"{path}: entry {key!r} is {_a(type(value).__name__)}, not a tensor; {expected}"
            )
    own = net.state_dict()
    # A head of another width (1000-way ImageNet vs. our classes) is dropped and left at init.
    state = {k: v for k, v in state.items() if not (k in own and own[k].shape != v.shape)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    head = str(net.pretrained_cfg.get("classifier", "head"))
    missing = [k for k in missing if not k.startswith(head + ".")]
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not fit timm model {model!r} ({_keys('missing', missing)}, "
            f"{_keys('unexpected', unexpected)}); is it the right timm model name?"
        )


def _read_weights(path: Path, expected: str) -> object:
    """The object a weights file holds; ValueError naming the file with our reason (torch's own
    message suggests weights_only=False, which would run code from the file)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # SafetensorError, OSError: all mean "cannot read it"
            raise ValueError(f"{path}: not a readable safetensors file; {expected}") from err
    try:
        with warnings.catch_warnings():  # a plain pickle: torch warns, then we refuse it anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = (
            "not a torch.save file of tensors (another format, or it pickles Python objects "
            "besides tensors, which are never unpickled)"
        )
        raise ValueError(f"{path}: {reason}; {expected}") from err
    except (EOFError, RuntimeError, OSError) as err:  # an empty or cut zip archive
        raise ValueError(
            f"{path}: truncated or corrupt (torch cannot open it); {expected}"
        ) from err


def _a(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _keys(kind: str, keys: list[str]) -> str:
    """``missing 3 keys: 'a', 'b', 'c', …`` for an error line."""
    shown = ", ".join(repr(k) for k in keys[:3]) + (", …" if len(keys) > 3 else "")
    return f"{kind} {len(keys)} key{'s' if len(keys) != 1 else ''}" + (f": {shown}" if keys else "")
