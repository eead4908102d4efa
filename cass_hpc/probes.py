"""What a net looks at: feature maps of a CNN and class-attention maps of a ViT, by forward hooks.

The paper studies (§5.6.6, App. E.2-E.3) the feature maps of the CNN after its first
convolution and its first five stages, and the Transformer's class-attention map after its first
attention block, averaged over test images. Both are read here with forward hooks found from the
net's structure, never from its timm name:

- a net with a multi-head self-attention module (one with ``qkv`` and ``num_heads``, timm's
  ``Attention``) is a Transformer: its first such module's ``qkv`` output gives
  ``softmax(q·kᵀ·scale)``; the class token's row over the patch tokens, averaged over heads and
  reshaped to the patch grid, is the map. A Transformer without a class token (Swin, a ViT with
  ``class_token=False``) has no class-attention map: :class:`Unsupported` says so.
- any other net is a CNN: the first ``nn.Conv2d`` in module order, then the first five entries
  of timm's ``feature_info`` (the stages); each map is the channel mean of that module's output.

Maps are averaged over the images, then upsampled (nearest: blocks) to the input size. Nothing
of timm's state is changed: hooks are removed on exit, fused attention is left as it is (we
recompute the attention from the ``qkv`` projection instead of reading it).

Usage::

    arm = build_arm(ArmSpec("resnet18"), num_classes=4)
    maps = probe(arm, images)  # images: (n, 3, S, S) in [0, 1]
    maps.names  # ("conv1", "act1", "layer1", "layer2", "layer3", "layer4")
    maps.sizes, maps.maps[0].shape  # ((S/2, S/2), ..., (S/32, S/32)), (S, S)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cass_hpc.models import Arm

STAGES = 5  # the paper's "first five layers" of the CNN (App. E.2)
FEATURE, ATTENTION = "feature", "attention"


class Unsupported(ValueError):
    """The net has no map of the kind the paper shows; the message says why, in one line."""


@dataclass(frozen=True)
class Maps:
    """What one net shows on a set of images: named 2-D maps averaged over the images.

    ``kind`` is ``feature`` (a CNN) or ``attention`` (a Transformer); each map is
    ``(size, size)`` float32, the input size, upsampled from its own resolution ``sizes``
    (h, w). ``message`` replaces the maps of an unsupported net.
    """

    kind: str
    names: tuple[str, ...] = ()
    maps: tuple[np.ndarray, ...] = ()
    sizes: tuple[tuple[int, int], ...] = ()
    message: str = ""


def attention_module(net: nn.Module) -> tuple[str, nn.Module] | None:
    """The first multi-head self-attention module (``qkv`` projection + ``num_heads``), or None
    for a net without one (a CNN)."""
    for name, module in net.named_modules():
        if isinstance(getattr(module, "qkv", None), nn.Linear) and hasattr(module, "num_heads"):
            return name, module
    return None


def _feature_modules(net: nn.Module) -> list[str]:
    """timm's stage module names (``feature_info``: a FeatureInfo or a list of dicts)."""
    info = getattr(net, "feature_info", None)
    if info is None:
        return []
    dicts = info.get_dicts() if hasattr(info, "get_dicts") else info
    return [str(d["module"]) for d in dicts if isinstance(d, dict) and d.get("module")]


def feature_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The CNN modules whose outputs are mapped: the first ``nn.Conv2d`` in module order, then
    the first :data:`STAGES` modules of ``feature_info`` (each once). Unsupported if neither."""
    layers: list[tuple[str, nn.Module]] = []
    first_conv = next(((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is not None:
        layers.append(first_conv)
    modules = dict(net.named_modules())
    for name in _feature_modules(net)[:STAGES]:
        if name in modules and all(name != n for n, _ in layers):
            layers.append((name, modules[name]))
    if not layers:
        raise Unsupported(
            f"{type(net).__name__} has no nn.Conv2d and no timm feature_info: no feature maps"
        )
    return layers


@contextmanager
def _hooked(modules: list[nn.Module], hook: Callable[[int, Tensor], None]) -> Iterator[None]:
    """Forward hooks calling ``hook(i, output)`` for the i-th module; removed on exit."""

    def make(i: int) -> Callable[..., None]:
        def on_output(_module: nn.Module, _inputs: object, output: object) -> None:
            if isinstance(output, list | tuple):  # some blocks return (features, extras)
                output = next(o for o in output if isinstance(o, Tensor))
            hook(i, output)

        return on_output

    handles = [m.register_forward_hook(make(i)) for i, m in enumerate(modules)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _channel_mean(output: Tensor) -> Tensor:
    """(B, C, H, W) → (B, H, W); read at hook time, before any in-place op changes it."""
    if output.ndim != 4:
        raise Unsupported(f"a feature module gave a {output.ndim}-D output, expected (B, C, H, W)")
    return output.detach().float().mean(dim=1)


def feature_maps(arm: Arm, images: Tensor) -> dict[str, Tensor]:
    """Per mapped layer (:func:`feature_layers`), the channel-mean map of each image:
    ``{name: (B, h, w)}`` at the layer's own resolution."""
    layers = feature_layers(arm.net)
    captured: dict[int, Tensor] = {}
    with _hooked([m for _, m in layers], lambda i, out: captured.setdefault(i, _channel_mean(out))):
        arm(images)
    return {name: captured[i] for i, (name, _) in enumerate(layers) if i in captured}


def _grid(net: nn.Module, patches: int) -> tuple[int, int]:
    grid = getattr(getattr(net, "patch_embed", None), "grid_size", None)
    if grid is not None and int(grid[0]) * int(grid[1]) == patches:
        return int(grid[0]), int(grid[1])
    side = int(round(patches**0.5))
    if side * side != patches:
        raise Unsupported(f"{patches} patch tokens do not form a square grid: no attention map")
    return side, side


def class_attention(arm: Arm, images: Tensor) -> Tensor:
    """The class token's attention over the patch tokens in the first attention block, averaged
    over heads: ``(B, gh, gw)`` on the patch grid. Raises :class:`Unsupported` for a net
    without an attention module or without a class token."""
    net = arm.net
    found = attention_module(net)
    if found is None:
        raise Unsupported(f"{type(net).__name__} has no attention module with a qkv projection")
    name, attn = found
    if getattr(net, "cls_token", None) is None:
        raise Unsupported(
            f"{type(net).__name__} has no class token (its attention is windowed or pooled): "
            "no class-attention map"
        )
    prefix = int(getattr(net, "num_prefix_tokens", 1))
    heads = int(attn.num_heads)
    captured: list[Tensor] = []
    with _hooked([attn.qkv], lambda _i, out: captured.append(out.detach().float())):
        arm(images)
    if not captured:
        raise Unsupported(f"attention module {name!r} did not run")
    qkv = captured[0]
    batch, tokens, width = qkv.shape
    qkv = qkv.reshape(batch, tokens, 3, heads, width // (3 * heads)).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
    with torch.no_grad():
        q = q_norm(q) if isinstance(q_norm, nn.Module) else q
        k = k_norm(k) if isinstance(k_norm, nn.Module) else k
    scale = float(getattr(attn, "scale", q.shape[-1] ** -0.5))
    weights = torch.softmax((q[:, :, :1] * scale) @ k.transpose(-2, -1), dim=-1)  # (B, H, 1, N)
    patches = weights[:, :, 0, prefix:].mean(dim=1)  # (B, N - prefix)
    return patches.reshape(batch, *_grid(net, tokens - prefix))


def _upsample(mean_map: Tensor, size: int) -> np.ndarray:
    # nearest: a 2×2 stage stays four blocks (smoothing would draw detail the net never had)
    resized = F.interpolate(mean_map[None, None], size=(size, size), mode="nearest")
    return resized[0, 0].cpu().numpy().astype(np.float32)


def probe(arm: Arm, images: Tensor, batch_size: int = 16) -> Maps:
    """The paper's maps of ``arm`` averaged over ``images`` ((n, 3, S, S) in [0, 1], on the
    arm's device), upsampled to S: feature maps for a CNN, the class-attention map for a
    Transformer; an unsupported net gives :class:`Maps` with ``message`` set, never an error."""
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(
            f"images must be a non-empty (n, 3, S, S) batch, got {tuple(images.shape)}"
        )
    kind = ATTENTION if attention_module(arm.net) is not None else FEATURE
    sums: dict[str, Tensor] = {}
    was_training = arm.training
    arm.eval()
    try:
        with torch.no_grad():
            for batch in images.split(batch_size):
                found = (
                    {"class attention, block 1": class_attention(arm, batch)}
                    if kind == ATTENTION
                    else feature_maps(arm, batch)
                )
                for name, maps in found.items():
                    sums[name] = sums.get(name, 0) + maps.sum(dim=0)
    except Unsupported as why:
        return Maps(kind=kind, message=str(why))
    finally:
        arm.train(was_training)
    size = int(images.shape[-1])
    names = tuple(sums)
    maps = tuple(_upsample(sums[n] / len(images), size) for n in names)
    return Maps(
        kind, names, maps, tuple((int(sums[n].shape[0]), int(sums[n].shape[1])) for n in names)
    )
