"""BYOL (Grill et al., NeurIPS 2020): an online net (backbone, projector, predictor) predicts a
momentum target's projection of the other view; negative cosine similarity, symmetrised. The
target is an exponential moving average of the online backbone and projector (momentum from
``momentum`` to 1 on a cosine). Heads and loss are lightly's (``BYOLProjectionHead``,
``BYOLPredictionHead``, ``NegativeCosineSimilarity``, ``update_momentum``).

    >>> cfg = BYOLConfig(momentum=0.99)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import Tensor, nn

from cass_hpc.data.transforms import MultiCrop
from cass_hpc.methods.base import PretrainMethod, Progress, StepOutput, Views
from cass_hpc.methods.dino import teacher_momentum
from cass_hpc.methods.two_view import HeadedArm, two_views
from cass_hpc.models import Arm


@dataclass(frozen=True)
class BYOLConfig:
    """Mirrors ``conf/method/byol.yaml: params`` (paper: 4096 → 256 MLPs; narrower here)."""

    projector_hidden: int = 1024  # projector and predictor MLP width
    projector_dim: int = 256  # embedding the loss acts on (paper: 256)
    momentum: float = 0.99  # target EMA momentum at the start, cosine to 1 (paper: 0.996)

    def __post_init__(self) -> None:
        if min(self.projector_hidden, self.projector_dim) < 1:
            raise ValueError(
                f"method.params.projector_hidden and projector_dim must be >= 1, got "
                f"{self.projector_hidden}, {self.projector_dim}"
            )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"method.params.momentum must be in [0, 1), got {self.momentum}")


class OnlineArm(HeadedArm):
    """Backbone → projector (``head``) → predictor: BYOL's online network."""

    def __init__(self, arm: Arm, projector: nn.Module, predictor: nn.Module) -> None:
        super().__init__(arm, projector)
        self.predictor = predictor

    def forward(self, images: Tensor) -> Tensor:
        return self.predictor(self.head(self.features(images)))


class BYOL(PretrainMethod):
    """BYOL for one backbone (the arm named ``arm``); the loop optimises the online net."""

    name = "byol"

    def __init__(self, arm: str, backbone: Arm, cfg: BYOLConfig) -> None:
        super().__init__()
        self.arm, self.cfg = arm, cfg
        width, hidden, dim = backbone.net.num_features, cfg.projector_hidden, cfg.projector_dim
        projector = BYOLProjectionHead(width, hidden, dim)
        online = OnlineArm(backbone, projector, BYOLPredictionHead(dim, hidden, dim))
        self.arms = nn.ModuleDict({arm: online})
        self.target = HeadedArm(copy.deepcopy(backbone), copy.deepcopy(projector))
        deactivate_requires_grad(self.target)
        self.loss = NegativeCosineSimilarity()

    def train_transform(self, image_size: int) -> MultiCrop:
        return MultiCrop(image_size, image_size, 0)  # two global crops

    def training_step(self, views: Views, progress: Progress | None = None) -> StepOutput:
        first, second = two_views(views, self.name)
        online = self.arms[self.arm]
        p1, p2 = online(first), online(second)
        with torch.no_grad():
            z1, z2 = self.target(first), self.target(second)
        loss = 0.5 * (self.loss(p1, z2) + self.loss(p2, z1))
        return StepOutput(loss=loss, embeddings={self.arm: z1.detach()})

    @torch.no_grad()
    def after_optimizer_step(self, progress: Progress) -> None:
        m = teacher_momentum(progress.fraction, self.cfg.momentum)
        online = self.arms[self.arm]
        update_momentum(online.net, self.target.net, m)
        update_momentum(online.head, self.target.head, m)
