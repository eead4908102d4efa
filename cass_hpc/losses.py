"""Fine-tuning loss: class-weighted focal loss (CASS §4.2, App. F.3; Lin et al. 2017)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

CLASS_WEIGHT_SCHEMES = ("inverse", "minmax", "frequency", "none")


def class_weights(counts: np.ndarray | list[int], scheme: str = "inverse") -> Tensor:
    """Per-class weights for the focal loss from the training labels' class counts.

    - ``inverse`` (default, ours): normalised inverse frequency ``min / n_c``; the rarest class
      gets 1, every class a weight > 0. ``min`` is the smallest count above 0: a class with
      count 0 gets 1, like the rarest present class (the splits keep every class present, so
      only a multi-label subset missing a label, or a caller's own counts, can have one; in
      single-label its weight is never used, in multi-label it weighs that label's all-negative
      terms like the rarest label's). All counts 0 give all ones.
    - ``minmax`` (the paper, App. F.3: "minimum-maximum normalised class distribution"):
      ``(n_c - min) / (max - min)``; all ones when every class has the same count. Taken
      literally this gives the rarest class weight 0: see docs/protocol.md.
    - ``frequency``: ``n_c / max`` (what the released notebooks did; majority class gets 1).
    - ``none``: all ones.

    Example:
        >>> class_weights([10, 20, 40]).tolist()  # rarest class 1
        [1.0, 0.5, 0.25]
    """
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or len(n) == 0 or (n < 0).any():
        raise ValueError(f"class counts must be a non-empty list of counts >= 0, got {counts}")
    if scheme == "minmax":
        span = n.max() - n.min()
        w = np.ones_like(n) if span == 0 else (n - n.min()) / span
    elif scheme == "frequency":
        w = n / n.max()
    elif scheme == "inverse":
        rarest = n[n > 0].min(initial=np.inf)  # inf: no class present, all ones below
        w = np.ones_like(n) if np.isinf(rarest) else rarest / np.maximum(n, rarest)
    elif scheme == "none":
        w = np.ones_like(n)
    else:
        raise ValueError(
            f"unknown class weight scheme {scheme!r}; choose from {CLASS_WEIGHT_SCHEMES}"
        )
    return torch.tensor(w, dtype=torch.float32)


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    alpha: float = 1.0,
    gamma: float = 2.0,
    weight: Tensor | None = None,
) -> Tensor:
    """Multi-class focal loss, mean over the batch: ``alpha * w_y * (1 - p_y)^gamma * CE``.

    Paper: alpha 1, gamma 2, class weights ``w`` from :func:`class_weights`.
    """
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(
            f"focal_loss needs (batch, classes) logits and (batch,) targets, got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    ce = F.cross_entropy(logits.float(), targets, reduction="none")
    p_true = torch.exp(-ce)
    loss = alpha * (1.0 - p_true).pow(gamma) * ce
    if weight is not None:
        loss = loss * weight.to(loss.device)[targets]
    return loss.mean()


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    alpha: float = 1.0,
    gamma: float = 2.0,
    weight: Tensor | None = None,
) -> Tensor:
    """Multi-label focal loss: per label ``alpha * w_c * (1 - p_t)^gamma * BCE``, mean over the
    batch and labels (Lin et al. 2017 with the paper's alpha 1 applied to every term).

    ``targets`` is multi-hot (0/1 floats) of the logits' shape.
    """
    if logits.shape != targets.shape or logits.ndim != 2:
        raise ValueError(
            f"sigmoid_focal_loss needs (batch, classes) logits and targets of one shape, got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    logits, targets = logits.float(), targets.float()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_true = p * targets + (1 - p) * (1 - targets)
    loss = alpha * (1.0 - p_true).pow(gamma) * bce
    if weight is not None:
        loss = loss * weight.to(loss.device)
    return loss.mean()
