"""CASS+ (OURS, not the paper's): cross-architecture self-supervision that does not collapse.

The paper's CASS (``cass.py``) feeds one view to a CNN and a ViT and pulls their outputs together;
from random init that objective is solved by collapse (docs/health.md). CASS+ keeps the
cross-architecture pairing — the CNN's and the ViT's embeddings of an image are pulled together —
and borrows three pieces from the non-contrastive literature:

- **two views** (BYOL, Grill et al. 2020; VICReg, Bardes et al. 2022): the CNN sees one augmented
  crop of the image and the ViT another (DINO's global-crop augmentations, Caron et al. 2021), so
  the nets must agree on what survives augmentation, not on the pixels of one view. Same compute
  as CASS: each net embeds one view per image;
- a **projector MLP** on each net (SimCLR, Chen et al. 2020; VICReg): the loss acts on the
  projections, fine-tuning keeps the backbone's pooled features;
- **VICReg's variance and covariance terms** on each net's projections (Bardes et al. 2022,
  eq. 1–4): every dimension keeps a batch std near 1 and the dimensions decorrelate, which rules
  out collapse by construction. The invariance term is VICReg's mean squared error between the
  two nets' projections.

Loss = ``λ·MSE(z_cnn, z_vit) + μ·[v(z_cnn) + v(z_vit)] + ν·[c(z_cnn) + c(z_vit)]`` with VICReg's
λ = μ = 25, ν = 1. ``docs/health.md`` ("CASS+ and the recipes measured") has the measurements
behind each choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cass_hpc.data.transforms import MultiCrop
from cass_hpc.methods.base import PretrainMethod, Progress, StepOutput
from cass_hpc.methods.cass import variance_hinge
from cass_hpc.models import Arm


def covariance_penalty(outputs: Tensor) -> Tensor:
    """VICReg's covariance term (Bardes et al. 2022, eq. 3): the sum of the squared off-diagonal
    entries of the batch covariance matrix of ``outputs`` ``(batch, dim)``, divided by ``dim``.

    >>> float(covariance_penalty(torch.eye(4)[:, :2].repeat(2, 1))) > 0
    True
    """
    if outputs.ndim != 2 or outputs.shape[0] < 2:
        raise ValueError(
            f"covariance_penalty needs (batch >= 2, dim) outputs, got {tuple(outputs.shape)}"
        )
    z = outputs.float() - outputs.float().mean(dim=0)
    n, dim = z.shape
    cov = (z.T @ z) / (n - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / dim


def vicreg_loss(
    a: Tensor, b: Tensor, invariance: float = 25.0, variance: float = 25.0, covariance: float = 1.0
) -> Tensor:
    """VICReg (Bardes, Ponce & LeCun, ICLR 2022, eq. 6) between two ``(batch, dim)`` embeddings:
    ``λ·MSE(a, b) + μ·[v(a) + v(b)] + ν·[c(a) + c(b)]``, v the hinge on each dimension's batch
    std (target 1), c the off-diagonal covariance. Here ``a`` and ``b`` come from two different
    architectures (CASS+)."""
    if a.shape != b.shape:
        raise ValueError(f"vicreg_loss needs two embeddings of one shape, got {a.shape}, {b.shape}")
    return (
        invariance * F.mse_loss(a.float(), b.float())
        + variance * (variance_hinge(a) + variance_hinge(b))
        + covariance * (covariance_penalty(a) + covariance_penalty(b))
    )


def projector(in_dim: int, hidden: int, out: int) -> nn.Sequential:
    """VICReg's expander, two layers: Linear-BN-ReLU-Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, out),
    )  # fmt: skip


class ProjectedArm(Arm):
    """A backbone (pooled features, no classifier) followed by a projector; ``net`` is the
    backbone alone, which is what fine-tuning receives."""

    def __init__(self, arm: Arm, hidden: int, out: int) -> None:
        super().__init__(arm.net, *arm.stats())
        self.projector = projector(arm.net.num_features, hidden, out)

    def forward(self, images: Tensor) -> Tensor:
        return self.projector(self.features(images))


@dataclass(frozen=True)
class CASSPlusConfig:
    """Mirrors ``conf/method/cass_plus.yaml: params``."""

    views: int = 2  # 2: the CNN and the ViT see two different crops; 1: one view (as CASS)
    projector_hidden: int = 512  # projector MLP width
    projector_dim: int = 512  # embedding the loss acts on
    invariance: float = 25.0  # VICReg λ
    variance: float = 25.0  # VICReg μ
    covariance: float = 1.0  # VICReg ν

    def __post_init__(self) -> None:
        if self.views not in (1, 2):
            raise ValueError(f"views must be 1 or 2, got {self.views}")
        if min(self.projector_hidden, self.projector_dim) < 1:
            raise ValueError(f"projector sizes must be >= 1, got {self}")
        for name in ("invariance", "variance", "covariance"):
            if (value := getattr(self, name)) < 0:
                raise ValueError(f"method.params.{name} must be >= 0, got {value}")


class CASSPlus(PretrainMethod):
    """CASS+: arms ``cnn`` and ``vit`` (``ProjectedArm``), one optimiser each."""

    name = "cass_plus"

    def __init__(self, cnn: Arm, vit: Arm, cfg: CASSPlusConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or CASSPlusConfig()
        hidden, out = self.cfg.projector_hidden, self.cfg.projector_dim
        self.arms = nn.ModuleDict(
            {"cnn": ProjectedArm(cnn, hidden, out), "vit": ProjectedArm(vit, hidden, out)}
        )

    def train_transform(self, image_size: int) -> MultiCrop:
        return MultiCrop(image_size, image_size, 0)  # DINO's two global crops

    def training_step(
        self, views: Tensor | list[Tensor], progress: Progress | None = None
    ) -> StepOutput:
        if not isinstance(views, list) or len(views) != 2:
            raise ValueError("CASS+ takes two views per image (its train_transform's crops)")
        first, second = views if self.cfg.views == 2 else (views[0], views[0])
        z_cnn = self.arms["cnn"](first)
        z_vit = self.arms["vit"](second)
        loss = vicreg_loss(
            z_cnn, z_vit, self.cfg.invariance, self.cfg.variance, self.cfg.covariance
        )
        return StepOutput(loss=loss, embeddings={"cnn": z_cnn.detach(), "vit": z_vit.detach()})
