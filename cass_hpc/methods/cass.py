"""CASS: one augmented view goes to a CNN and to a Transformer; their outputs are pulled together.

Singh, Sizikova & Cirrone, "CASS: Cross Architectural Self-Supervision for Medical Image
Analysis", §3.1, eq. 1. No projection MLP, softmax, centering, EMA teacher or stop-gradient:
gradients reach both nets. Nothing here prevents collapse (the paper argues the two
architectures' difference does); `spread` measures it so the pretraining loop can report it.

Usage::

    method = CASS(cnn=arm_cnn, vit=arm_vit)
    out = method.training_step(images)   # out.loss, out.embeddings["cnn"], out.embeddings["vit"]
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cass_hpc.methods.base import StepOutput


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


def spread(outputs: Tensor) -> float:
    """Collapse diagnostic: std over the batch of the L2-normalised outputs, summed over dims.

    0 means every image maps to the same direction (collapsed). For outputs spread uniformly on
    the unit sphere of dimension d it approaches ``sqrt(d)``.
    """
    if outputs.ndim != 2 or outputs.shape[0] < 2:
        raise ValueError(f"spread needs (batch >= 2, dim) outputs, got {tuple(outputs.shape)}")
    z = F.normalize(outputs.detach().float(), dim=-1, eps=1e-12)
    return float(z.std(dim=0).sum())


class CASS(nn.Module):
    """The CASS method: two nets (arms ``cnn`` and ``vit``), each with its own optimiser."""

    name = "cass"

    def __init__(self, cnn: nn.Module, vit: nn.Module) -> None:
        super().__init__()
        self.arms = nn.ModuleDict({"cnn": cnn, "vit": vit})

    def training_step(self, images: Tensor) -> StepOutput:
        """One view, the same tensor, through both nets (paper §3.1)."""
        cnn_out = self.arms["cnn"](images)
        vit_out = self.arms["vit"](images)
        return StepOutput(
            loss=cass_loss(cnn_out, vit_out),
            embeddings={"cnn": cnn_out.detach(), "vit": vit_out.detach()},
        )

    def trained_arms(self) -> dict[str, nn.Module]:
        """The nets fine-tuning starts from, by arm name."""
        return dict(self.arms.items())
