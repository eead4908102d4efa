"""The shape the field's joint-embedding methods share (SimCLR, VICReg, BYOL): one backbone,
two augmented views of each image, a head on the backbone's pooled features, a loss between
the two views' embeddings. Each pretrains one arm on its own (``per_arm``), as DINO does; the
head is dropped before fine-tuning, which gets the backbone (``HeadedArm.net``).

Views are DINO's two global crops (``MultiCrop``: random resized crop, flip, colour jitter,
grayscale, blur, solarize), the augmentation family SimCLR introduced and BYOL refined.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from cass_hpc.data.transforms import MultiCrop
from cass_hpc.methods.base import PretrainMethod, Progress, StepOutput, Views
from cass_hpc.models import Arm


class HeadedArm(Arm):
    """A backbone (pooled features, no classifier) followed by ``head``; ``net`` is the backbone
    alone, which is what fine-tuning and the k-NN monitor receive."""

    def __init__(self, arm: Arm, head: nn.Module) -> None:
        super().__init__(arm.net, *arm.stats())
        self.head = head

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


def two_views(views: Views, method: str) -> tuple[Tensor, Tensor]:
    """The two crops of a batch (``MultiCrop(size, size, 0)``); ValueError otherwise."""
    if not isinstance(views, list) or len(views) != 2:
        raise ValueError(f"{method} takes two views per image (its train_transform's crops)")
    return views[0], views[1]


class TwoViewMethod(PretrainMethod):
    """One arm ``arm`` with a head, trained on ``loss(head(view 1), head(view 2))``."""

    def __init__(
        self, name: str, arm: str, net: HeadedArm, loss: Callable[[Tensor, Tensor], Tensor]
    ) -> None:
        super().__init__()
        self.name, self.arm, self.loss = name, arm, loss
        self.arms = nn.ModuleDict({arm: net})

    def train_transform(self, image_size: int) -> MultiCrop:
        return MultiCrop(image_size, image_size, 0)  # two global crops

    def training_step(self, views: Views, progress: Progress | None = None) -> StepOutput:
        first, second = two_views(views, self.name)
        z1, z2 = self.arms[self.arm](first), self.arms[self.arm](second)
        return StepOutput(loss=self.loss(z1, z2), embeddings={self.arm: z1.detach()})
