"""CASS: one augmented view goes to a CNN and to a Transformer; their outputs are pulled together.

Singh, Sizikova & Cirrone, "CASS: Cross Architectural Self-Supervision for Medical Image
Analysis", §3.1, eq. 1. No projection MLP, softmax, centering, EMA teacher or stop-gradient:
gradients reach both nets. Nothing here prevents collapse (the paper argues the two
architectures' difference does); `collapse.spread` measures it for the pretraining loop.

Options (defaults = the paper): ``head_activation`` applied to both outputs before the loss
(App. D.5 ablation: ``softmax`` / ``sigmoid``), and — ours, beyond the paper — ``anti_collapse``:
``center`` (subtract each net's batch mean before normalising) or ``variance`` (add a
VICReg-style hinge on each output dimension's batch std, Bardes et al. 2022).

Usage::

    method = CASS(cnn=arm_cnn, vit=arm_vit)
    out = method.training_step(images, progress)   # out.loss, out.embeddings["cnn"|"vit"]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cass_hpc.data.transforms import AUGMENT_SETS, paper_augmentation
from cass_hpc.methods.base import PretrainMethod, Progress, StepOutput

HEAD_ACTIVATIONS = ("none", "softmax", "sigmoid")
ANTI_COLLAPSE = ("none", "center", "variance")


def cass_loss(cnn_out: Tensor, vit_out: Tensor) -> Tensor:
    """The CASS loss (paper eq. 1): mean over the batch of ``2 - 2 * cos(r, t)``.

    Both inputs are ``(batch, dim)`` outputs of the two nets for the same images. They are
    L2-normalised (``F.normalize``, eps 1e-12), so the loss is scale invariant and lies in
    [0, 4]: 0 for identical directions, 4 for opposite ones. Symmetric; no stop-gradient.

    >>> x = torch.randn(4, 8)
    >>> float(cass_loss(x, 3 * x)) < 1e-6
    True
    """
    if cnn_out.ndim != 2 or cnn_out.shape != vit_out.shape:
        raise ValueError(
            f"cass_loss needs two (batch, dim) tensors of one shape, got "
            f"{tuple(cnn_out.shape)} and {tuple(vit_out.shape)}"
        )
    r = F.normalize(cnn_out.float(), dim=-1, eps=1e-12)
    t = F.normalize(vit_out.float(), dim=-1, eps=1e-12)
    return (2.0 - 2.0 * (r * t).sum(dim=-1)).mean()


def variance_hinge(outputs: Tensor, target_std: float = 1.0, eps: float = 1e-4) -> Tensor:
    """VICReg's variance term: mean over dimensions of ``relu(target_std - std_batch)``.

    Zero when every output dimension varies across the batch by at least ``target_std``;
    positive (and pushing the dimensions apart) as the outputs collapse.
    """
    if outputs.ndim != 2 or outputs.shape[0] < 2:
        raise ValueError(
            f"variance_hinge needs (batch >= 2, dim) outputs, got {tuple(outputs.shape)}"
        )
    std = torch.sqrt(outputs.float().var(dim=0) + eps)
    return F.relu(target_std - std).mean()


@dataclass(frozen=True)
class CASSConfig:
    """Mirrors ``conf/method/cass.yaml: params``."""

    head_activation: str = "none"  # none (paper) | softmax | sigmoid (App. D.5 ablation)
    anti_collapse: str = "none"  # none (paper) | center | variance  (ours, not in the paper)
    variance_weight: float = 1.0  # weight of the variance hinge when anti_collapse=variance
    augment: str = "paper"  # paper | solarize | blur | solarize_blur (App. C.3 ablation)

    def __post_init__(self) -> None:
        if self.head_activation not in HEAD_ACTIVATIONS:
            raise ValueError(
                f"head_activation must be one of {HEAD_ACTIVATIONS}, got {self.head_activation!r}"
            )
        if self.anti_collapse not in ANTI_COLLAPSE:
            raise ValueError(
                f"anti_collapse must be one of {ANTI_COLLAPSE}, got {self.anti_collapse!r}"
            )
        if self.augment not in AUGMENT_SETS:
            raise ValueError(
                f"method.params.augment must be one of {AUGMENT_SETS}, got {self.augment!r}"
            )
        if self.variance_weight < 0:
            raise ValueError(
                f"method.params.variance_weight must be >= 0, got {self.variance_weight}"
            )


class CASS(PretrainMethod):
    """The CASS method: two nets (arms ``cnn`` and ``vit``), each with its own optimiser."""

    name = "cass"

    def __init__(self, cnn: nn.Module, vit: nn.Module, cfg: CASSConfig | None = None) -> None:
        super().__init__()
        self.arms = nn.ModuleDict({"cnn": cnn, "vit": vit})
        self.cfg = cfg or CASSConfig()

    def train_transform(self, image_size: int):  # type: ignore[no-untyped-def]
        return paper_augmentation(image_size, self.cfg.augment)

    def _prepare(self, outputs: Tensor) -> Tensor:
        if self.cfg.head_activation == "softmax":
            outputs = outputs.float().softmax(dim=-1)
        elif self.cfg.head_activation == "sigmoid":
            outputs = outputs.float().sigmoid()
        if self.cfg.anti_collapse == "center":
            outputs = outputs - outputs.mean(dim=0, keepdim=True)
        return outputs

    def training_step(
        self, views: Tensor | list[Tensor], progress: Progress | None = None
    ) -> StepOutput:
        """One view, the same tensor, through both nets (paper §3.1)."""
        if isinstance(views, list):
            raise ValueError("CASS takes one view per image, got a list of crops")
        cnn_out = self.arms["cnn"](views)
        vit_out = self.arms["vit"](views)
        loss = cass_loss(self._prepare(cnn_out), self._prepare(vit_out))
        if self.cfg.anti_collapse == "variance":
            loss = loss + self.cfg.variance_weight * (
                variance_hinge(cnn_out) + variance_hinge(vit_out)
            )
        return StepOutput(loss=loss, embeddings={"cnn": cnn_out.detach(), "vit": vit_out.detach()})
