"""SimCLR (Chen, Kornblith, Norouzi & Hinton, ICML 2020): two views, a projection MLP, the
NT-Xent contrastive loss (each view's positive is its twin, the rest of the batch negatives).
Head and loss are lightly's (``SimCLRProjectionHead``, ``NTXentLoss``).

    >>> cfg = SimCLRConfig(temperature=0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead

from cass_hpc.methods.two_view import HeadedArm, TwoViewMethod
from cass_hpc.models import Arm


@dataclass(frozen=True)
class SimCLRConfig:
    """Mirrors ``conf/method/simclr.yaml: params``."""

    projector_hidden: int = 512  # projection MLP width (paper: the backbone's width)
    projector_dim: int = 128  # embedding the loss acts on (paper: 128)
    temperature: float = 0.5  # NT-Xent τ (paper, Table 5: 0.5 at batch 256-512)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"method.params.temperature must be > 0, got {self.temperature}")
        if min(self.projector_hidden, self.projector_dim) < 1:
            raise ValueError(
                f"method.params.projector_hidden and projector_dim must be >= 1, got "
                f"{self.projector_hidden}, {self.projector_dim}"
            )


def build_simclr(arm: str, backbone: Arm, cfg: SimCLRConfig) -> TwoViewMethod:
    head = SimCLRProjectionHead(backbone.net.num_features, cfg.projector_hidden, cfg.projector_dim)
    loss = NTXentLoss(temperature=cfg.temperature)
    return TwoViewMethod("simclr", arm, HeadedArm(backbone, head), loss)
