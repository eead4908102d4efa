"""Backbones by timm name, wrapped with their own input normalisation.

An arm starts from one of three places (``init``, conf/init/*.yaml):

- ``random``: timm's own initialisation (the default of the demo and the tests, which have no
  weights);
- ``imagenet``: the paper's protocol (App. D.4). timm's own pretrained path builds the net from
  its pretrained tag (``resnet50.a1_in1k``): timm drops the 1000-way head for ours, resamples a
  ViT's position embedding to the run's image size and sets mean/std. The file comes from the
  Hugging Face cache, offline (``pretrained.py``), or from ``pretrained`` if the user names one;
- ``local``: any state dict the user names (``pretrained``: e.g. weights exported by
  ``cass_hpc.export``), read by :func:`load_weights`, which takes heads of other widths.

Nothing here downloads: a missing file is a one-line ValueError before any job is submitted.
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

from cass_hpc.pretrained import INITS, imagenet_tag, starting_weights


@dataclass(frozen=True)
class ArmSpec:
    """One net of a method, as configured in ``conf/model/*.yaml``."""

    name: str  # timm model name, e.g. "resnet50", "vit_base_patch16_384"
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra timm kwargs (img_size for ViTs)
    pretrained: str | None = None  # a local weights file (init=local, or imagenet's own file)
    init: str | None = None  # random | imagenet | local; None: local if pretrained, else random
    tag: str | None = None  # timm pretrained tag init=imagenet loads, e.g. "resnet50.a1_in1k"

    def __post_init__(self) -> None:
        if self.init is not None and self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")

    @property
    def source(self) -> str:
        """Where the arm starts: random, imagenet or local."""
        return self.init or ("local" if self.pretrained else "random")


def arm_identity(arm: str, spec: ArmSpec) -> dict[str, Any]:
    """What identifies an arm in the run store's keys: the net, and for a pretrained start the
    starting weights by content (init and sha256), so that two grids with different starting
    weights never share a result. A random-init arm keeps the entry it always had."""
    identity: dict[str, Any] = {"name": spec.name, "kwargs": dict(spec.kwargs)}
    if spec.source == "random":
        return {**identity, "pretrained": None}
    start = starting_weights(arm, spec)
    init = start.label if spec.source == "imagenet" else "local"
    return {**identity, "init": init, "sha256": start.sha256}


class Arm(nn.Module):
    """A timm net preceded by its own normalisation (per-model mean/std from timm's config).

    The augmented view is a float tensor in [0, 1]; each arm normalises it its own way, so CASS
    can feed the *same* view to a CNN and a ViT that expect different statistics.
    """

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self._stats = (tuple(mean), tuple(std))  # as given: readable on any device (meta too)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return self.net((images - self.mean) / self.std)

    def stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The (mean, std) it normalises with: to wrap its net in another ``Arm`` (a head)."""
        return self._stats

    def features(self, images: Tensor) -> Tensor:
        """The pooled features before the classifier (what fine-tuning keeps of the net)."""
        net = self.net
        return net.forward_head(net.forward_features((images - self.mean) / self.std), True)

    def reset_head(self, num_classes: int) -> None:
        """Replace the classifier by ``Linear(features, num_classes)`` (fine-tuning, §4.2)."""
        self.net.reset_classifier(num_classes)


def build_arm(
    spec: ArmSpec, *, num_classes: int, dynamic_size: bool = False, arm: str = "arm"
) -> Arm:
    """Build ``spec.name`` from timm: random init, timm's pretrained path (``init=imagenet``,
    offline) or a local state dict (``init=local``).

    ``num_classes`` is the head's width: the CASS output dimension during pretraining (paper:
    timm's 1000-way classifier logits), the number of classes when fine-tuning, 0 for pooled
    features (DINO puts its own head on top). ``dynamic_size`` lets a ViT take inputs of other
    sizes than it was built for (DINO's local crops); CNNs take any size anyway. ``arm`` names
    the arm in errors (``cnn``, ``vit``).
    """
    if not timm.is_model(spec.name):
        raise ValueError(
            f"unknown timm model {spec.name!r}; list names with "
            "`python -c \"import timm; print(timm.list_models('*vit*'))\"`"
        )
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    kwargs: dict[str, Any] = {"num_classes": num_classes, **spec.kwargs}
    name = spec.name
    if spec.source == "imagenet":  # timm's own loader, reading the file found offline
        name = imagenet_tag(arm, spec)
        file = starting_weights(arm, spec).file
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(file)})
    try:
        net = _create(name, kwargs, dynamic_size)
    except (RuntimeError, OSError, KeyError) as err:  # timm's loader on a file that does not fit
        if spec.source != "imagenet":
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise ValueError(
            f"init=imagenet: timm could not load {kwargs['pretrained_cfg_overlay']['file']} into "
            f"{name} for the {arm} arm: {first}"
        ) from err
    if spec.source == "local":
        assert spec.pretrained is not None
        load_weights(net, spec.pretrained, spec.name)
    return Arm(net, *normalisation(net))


def meta_net(spec: ArmSpec, arm: str | None = None) -> nn.Module:
    """``spec``'s timm net (pooled features) on the meta device: its structure without memory
    or weights, for checks before anything is submitted. ValueError naming ``model.<arm>`` and
    the value when timm has no such model or refuses its kwargs."""
    where = f"model.{arm}" if arm else "model"
    if not timm.is_model(spec.name):
        close = ", ".join(timm.list_models(f"*{spec.name.split('_')[0]}*")[:5])
        hint = f" (timm has e.g. {close})" if close else ""
        raise ValueError(f"{where}.name: unknown timm model {spec.name!r}{hint}")
    try:
        with torch.device("meta"):
            return timm.create_model(spec.name, pretrained=False, num_classes=0, **spec.kwargs)
    except Exception as err:  # timm raises anything for a bad kwarg (TypeError, AssertionError…)
        raise ValueError(
            f"{where}: timm cannot build {spec.name} with {dict(spec.kwargs)}: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from None


def _create(name: str, kwargs: dict[str, Any], dynamic_size: bool) -> nn.Module:
    if dynamic_size:
        try:
            return timm.create_model(name, dynamic_img_size=True, dynamic_img_pad=True, **kwargs)
        except TypeError:  # the architecture has no such option: it takes any size already
            pass
    return timm.create_model(name, **kwargs)


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
    state = read_state_dict(path, model)
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


def read_state_dict(path: Path, model: str) -> dict[str, Tensor]:
    """The state dict of tensors in weights or checkpoint file ``path`` (for timm model
    ``model``; a ``state_dict``/``model`` wrapper unwrapped): the one reader of every weights
    file (init=local, maps, export). ValueError, one line naming the file and what was expected."""
    expected = (
        f"expected a state dict of tensors for timm model {model!r} "
        f"(torch.save(model.state_dict(), FILE), or .safetensors)"
    )
    if path.is_dir():
        raise ValueError(f"{path}: a folder, not a weights file; {expected}")
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
    return state


def _read_weights(path: Path, expected: str) -> object:
    """The object a weights file holds; ValueError naming the file with our reason (torch's own
    message suggests weights_only=False, which would run code from the file)."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # SafetensorError, OSError: all mean "cannot read it"
            raise ValueError(f"{path}: not a readable safetensors file; {expected}") from err
    try:
        with warnings.catch_warnings():  # a plain pickle: torch warns, then we refuse it anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, KeyError, IndexError, ValueError) as err:  # text: KeyError
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
