"""Augmentations in torchvision v2: the CASS paper set (App. F.2.2) with its ablation extras
(App. C.3: + Solarize, + GaussianBlur), DINO's multi-crop, and the evaluation transform.

Views are float tensors in [0, 1]; normalisation happens per net (`models.Arm`), so one view can
feed a CNN and a ViT that expect different statistics (PAPER.md, "per-model normalisation").
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

AUGMENT_SETS = ("paper", "solarize", "blur", "solarize_blur")


def _blur(image_size: int, p: float) -> v2.Transform:
    kernel = max(3, (image_size // 10) | 1)  # odd, ~10 % of the image as in BYOL/DINO
    return v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=p)


def paper_augmentation(image_size: int, augment: str = "paper") -> v2.Compose:
    """Resize → p 0.3 [ColorJitter(.2,.2,.2) + RandomPerspective(.2)] → p 0.3 [ColorJitter +
    RandomAffine(10)] → VerticalFlip p 0.3 → HorizontalFlip p 0.3 (CASS App. F.2.2), applied once
    per image: both nets of CASS see this one view. ``augment`` adds the App. C.3 extras:
    ``solarize`` (p 0.2), ``blur`` (p 0.5) or ``solarize_blur``."""
    if augment not in AUGMENT_SETS:
        raise ValueError(f"augment must be one of {AUGMENT_SETS}, got {augment!r}")
    extras: list[v2.Transform] = []
    if "solarize" in augment:
        extras.append(v2.RandomSolarize(threshold=128, p=0.2))
    if "blur" in augment:
        extras.append(_blur(image_size, p=0.5))
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((image_size, image_size), antialias=True),
            v2.RandomApply(
                [v2.ColorJitter(0.2, 0.2, 0.2), v2.RandomPerspective(distortion_scale=0.2)], p=0.3
            ),
            v2.RandomApply([v2.ColorJitter(0.2, 0.2, 0.2), v2.RandomAffine(degrees=10)], p=0.3),
            v2.RandomVerticalFlip(p=0.3),
            v2.RandomHorizontalFlip(p=0.3),
            *extras,
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def eval_transform(image_size: int) -> v2.Compose:
    """Resize only (+ scaling to [0, 1]); normalisation is the net's own."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((image_size, image_size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


class MultiCrop:
    """DINO's multi-crop (Caron et al. 2021, App. of DataAugmentationDINO): 2 global crops
    (blur p 1.0 / p 0.1 + solarize p 0.2) and ``local_crops`` small crops (blur p 0.5), each with
    flip, colour jitter (0.4, 0.4, 0.2, 0.1) p 0.8 and grayscale p 0.2. Returns the list of crops,
    global first."""

    def __init__(
        self,
        global_size: int,
        local_size: int,
        local_crops: int,
        global_scale: tuple[float, float] = (0.4, 1.0),
        local_scale: tuple[float, float] = (0.05, 0.4),
    ) -> None:
        if local_crops < 0:
            raise ValueError(f"local_crops must be >= 0, got {local_crops}")
        flip_colour = [
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
        ]
        to_float = v2.ToDtype(torch.float32, scale=True)
        crop = v2.RandomResizedCrop(global_size, scale=tuple(global_scale), antialias=True)
        self.global1 = v2.Compose(
            [v2.ToImage(), crop, *flip_colour, _blur(global_size, 1.0), to_float]
        )
        self.global2 = v2.Compose(
            [
                v2.ToImage(), crop, *flip_colour, _blur(global_size, 0.1),
                v2.RandomSolarize(threshold=128, p=0.2), to_float,
            ]
        )  # fmt: skip
        local = v2.RandomResizedCrop(local_size, scale=tuple(local_scale), antialias=True)
        self.local = v2.Compose(
            [v2.ToImage(), local, *flip_colour, _blur(local_size, 0.5), to_float]
        )
        self.local_crops = local_crops

    def __call__(self, image: np.ndarray) -> list[torch.Tensor]:
        crops = [self.global1(image), self.global2(image)]
        crops += [self.local(image) for _ in range(self.local_crops)]
        return crops
