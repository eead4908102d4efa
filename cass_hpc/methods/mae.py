"""MAE (He et al., CVPR 2022): mask most patches of an image, encode the visible ones with the
ViT, reconstruct the masked patches' pixels with a small decoder; mean squared error on the
masked patches (per-patch normalised targets, the paper's ``norm_pix_loss``). ViT arms only; no
batch statistics, so batch 16 is no handicap. Masking, encoder wrapper and decoder are lightly's
(``MaskedVisionTransformerTIMM``, ``MaskedVisionTransformerDecoderTIMM``, ``random_token_mask``);
the ViT keeps its own initialisation and position embedding (random or ImageNet).

    >>> cfg = MAEConfig(mask_ratio=0.75)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lightly.models import utils
from lightly.models.modules import MaskedVisionTransformerDecoderTIMM, MaskedVisionTransformerTIMM
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn
from torchvision.transforms import v2

from cass_hpc.methods.base import PretrainMethod, Progress, StepOutput, Views
from cass_hpc.models import Arm


@dataclass(frozen=True)
class MAEConfig:
    """Mirrors ``conf/method/mae.yaml: params`` (paper: decoder 8 × 512; small ViTs here)."""

    mask_ratio: float = 0.75  # share of patches masked (paper: 0.75)
    decoder_dim: int = 128  # decoder width
    decoder_depth: int = 2  # decoder blocks
    decoder_heads: int = 4  # decoder attention heads (must divide decoder_dim)
    norm_pix_loss: bool = True  # targets normalised per patch (paper's best)
    min_crop_scale: float = 0.2  # RandomResizedCrop scale (0.2, 1), the paper's augmentation

    def __post_init__(self) -> None:
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"method.params.mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if min(self.decoder_dim, self.decoder_depth, self.decoder_heads) < 1:
            raise ValueError(
                f"method.params.decoder_dim, decoder_depth and decoder_heads must be >= 1, got "
                f"{self.decoder_dim}, {self.decoder_depth}, {self.decoder_heads}"
            )
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(
                f"method.params.decoder_heads={self.decoder_heads} must divide "
                f"decoder_dim={self.decoder_dim}"
            )
        if not 0 < self.min_crop_scale <= 1:
            raise ValueError(
                f"method.params.min_crop_scale must be in (0, 1], got {self.min_crop_scale}"
            )


def check_vit(vit: nn.Module, cfg: MAEConfig) -> None:
    """ValueError unless ``vit`` is a timm ViT (one class token, one image size) of which MAE
    keeps at least one patch visible at ``cfg.mask_ratio``. Run before anything is submitted,
    on a net built on the meta device (``MethodEntry.check_net``)."""
    if not isinstance(vit, VisionTransformer) or vit.num_prefix_tokens != 1:
        raise ValueError(
            f"method=mae pretrains a timm VisionTransformer with one class token, got "
            f"{type(vit).__name__} (prefix tokens: {getattr(vit, 'num_prefix_tokens', '?')})"
        )
    if getattr(vit, "dynamic_img_size", False):
        raise ValueError("method=mae needs a ViT built for one image size")
    patches = int(vit.patch_embed.num_patches)
    if int(patches * (1 - cfg.mask_ratio)) < 1:  # lightly's random_token_mask keeps this many
        raise ValueError(
            f"method=mae: mask_ratio={cfg.mask_ratio} leaves none of the image's {patches} "
            f"patches visible to the encoder; lower method.params.mask_ratio or raise image_size"
        )


class MAEArm(Arm):
    """The ViT (``net``, what fine-tuning gets) with MAE's masking encoder view and decoder."""

    def __init__(self, arm: Arm, cfg: MAEConfig) -> None:
        vit = arm.net
        check_vit(vit, cfg)
        super().__init__(vit, *arm.stats())
        self.cfg = cfg
        self.encoder = MaskedVisionTransformerTIMM(
            vit=vit, weight_initialization="skip", pos_embed_initialization="skip"
        )  # keeps the ViT's own weights and position embedding
        self.patch = int(vit.patch_embed.patch_size[0])
        self.decoder_embed = nn.Linear(vit.embed_dim, cfg.decoder_dim)
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=vit.patch_embed.num_patches, embed_dim=cfg.decoder_dim,
            depth=cfg.decoder_depth, num_heads=cfg.decoder_heads,
        )  # fmt: skip
        self.predict = nn.Linear(cfg.decoder_dim, self.patch**2 * 3)

    def reconstruction(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(loss on the masked patches, the encoder's class token)."""
        x = (images - self.mean) / self.std
        batch, length = x.shape[0], self.encoder.sequence_length
        keep, masked = utils.random_token_mask(
            (batch, length), mask_ratio=self.cfg.mask_ratio, device=x.device
        )
        encoded = self.encoder.encode(images=x, idx_keep=keep)
        tokens = utils.repeat_token(self.decoder.mask_token, (batch, length))
        tokens = utils.set_at_index(tokens, keep, self.decoder_embed(encoded).type_as(tokens))
        decoded = self.decoder.decode(self.decoder.add_pos_embed(tokens))
        prediction = self.predict(utils.get_at_index(decoded, masked))
        target = utils.get_at_index(utils.patchify(x, self.patch), masked - 1)  # no class token
        if self.cfg.norm_pix_loss:
            target = utils.normalize_mean_var(target, dim=-1)
        return F.mse_loss(prediction.float(), target.float()), encoded[:, 0]


class MAE(PretrainMethod):
    """MAE for one ViT arm."""

    name = "mae"

    def __init__(self, arm: str, backbone: Arm, cfg: MAEConfig) -> None:
        super().__init__()
        self.arm, self.cfg = arm, cfg
        self.arms = nn.ModuleDict({arm: MAEArm(backbone, cfg)})

    def train_transform(self, image_size: int) -> v2.Compose:
        crop = v2.RandomResizedCrop(image_size, scale=(self.cfg.min_crop_scale, 1.0))
        return v2.Compose([v2.ToImage(), crop, v2.RandomHorizontalFlip(),
                           v2.ToDtype(torch.float32, scale=True)])  # fmt: skip

    def training_step(self, views: Views, progress: Progress | None = None) -> StepOutput:
        images = views[0] if isinstance(views, list) else views
        loss, cls = self.arms[self.arm].reconstruction(images)
        return StepOutput(loss=loss, embeddings={self.arm: cls.detach()})
