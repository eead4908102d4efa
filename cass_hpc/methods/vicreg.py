"""VICReg (Bardes, Ponce & LeCun, ICLR 2022): two views, an expander MLP, and the loss
``λ·invariance + μ·variance + ν·covariance`` that rules out collapse without negatives.
Head and loss are lightly's (``VICRegProjectionHead``, ``VICRegLoss``).

    >>> cfg = VICRegConfig(projector_dim=1024)
"""

from __future__ import annotations

from dataclasses import dataclass

from lightly.loss import VICRegLoss
from lightly.models.modules.heads import VICRegProjectionHead

from cass_hpc.methods.two_view import HeadedArm, TwoViewMethod
from cass_hpc.models import Arm


@dataclass(frozen=True)
class VICRegConfig:
    """Mirrors ``conf/method/vicreg.yaml: params`` (paper: 3 layers of 8192; narrower here)."""

    projector_hidden: int = 2048  # expander width
    projector_dim: int = 2048  # embedding the loss acts on
    projector_layers: int = 3  # paper: 3
    invariance: float = 25.0  # λ (paper: 25)
    variance: float = 25.0  # μ (paper: 25)
    covariance: float = 1.0  # ν (paper: 1)

    def __post_init__(self) -> None:
        if min(self.projector_hidden, self.projector_dim, self.projector_layers) < 1:
            raise ValueError(
                f"method.params.projector_hidden, projector_dim and projector_layers must be "
                f">= 1, got {self.projector_hidden}, {self.projector_dim}, {self.projector_layers}"
            )
        if min(self.invariance, self.variance, self.covariance) < 0:
            raise ValueError(
                f"method.params.invariance, variance and covariance (VICReg weights) must be "
                f">= 0, got {self.invariance}, {self.variance}, {self.covariance}"
            )


def build_vicreg(arm: str, backbone: Arm, cfg: VICRegConfig) -> TwoViewMethod:
    head = VICRegProjectionHead(
        backbone.net.num_features, cfg.projector_hidden, cfg.projector_dim, cfg.projector_layers
    )
    loss = VICRegLoss(cfg.invariance, cfg.variance, cfg.covariance)
    return TwoViewMethod("vicreg", arm, HeadedArm(backbone, head), loss)
