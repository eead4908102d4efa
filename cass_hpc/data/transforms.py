"""The paper's augmentations (App. F.2.2) and the evaluation transform, in torchvision v2.

Views are float tensors in [0, 1]; normalisation happens per net (`models.Arm`), so one view can
feed a CNN and a ViT that expect different statistics (PAPER.md, "per-model normalisation").
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2


def _resize(image_size: int) -> list[v2.Transform]:
    # Shards are stored pre-resized; resize only when the run asks for another size.
    return [v2.Resize((image_size, image_size), antialias=True)]


def paper_augmentation(image_size: int) -> v2.Compose:
    """Resize → p 0.3 [ColorJitter(.2,.2,.2) + RandomPerspective(.2)] → p 0.3 [ColorJitter +
    RandomAffine(10)] → VerticalFlip p 0.3 → HorizontalFlip p 0.3 (CASS App. F.2.2), applied once
    per image: both nets of CASS see this one view."""
    return v2.Compose(
        [
            v2.ToImage(),
            *_resize(image_size),
            v2.RandomApply(
                [v2.ColorJitter(0.2, 0.2, 0.2), v2.RandomPerspective(distortion_scale=0.2)], p=0.3
            ),
            v2.RandomApply([v2.ColorJitter(0.2, 0.2, 0.2), v2.RandomAffine(degrees=10)], p=0.3),
            v2.RandomVerticalFlip(p=0.3),
            v2.RandomHorizontalFlip(p=0.3),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def eval_transform(image_size: int) -> v2.Compose:
    """Resize only (+ scaling to [0, 1]); normalisation is the net's own."""
    return v2.Compose([v2.ToImage(), *_resize(image_size), v2.ToDtype(torch.float32, scale=True)])
