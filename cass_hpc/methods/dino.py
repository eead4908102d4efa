"""DINO as its paper specifies (Caron et al. 2021, "Emerging Properties in Self-Supervised
Vision Transformers", §3.1 and App.), for any timm backbone, CNN or ViT.

Student and teacher share the architecture (backbone + projection head: 3-layer MLP, hidden
2048, bottleneck 256, L2-normalised, weight-normalised last layer with K prototypes). The teacher
is an EMA of the student (momentum 0.996 → 1, cosine) and sees only the 2 global crops; the
student sees all crops (multi-crop). The loss is the cross-entropy between the teacher's centred,
sharpened softmax (temperature 0.04 → 0.07 warm-up; centre momentum 0.9) and the student's
softmax (temperature 0.1), over all (teacher crop, student crop) pairs that are not the same view.
The last layer is frozen during the first epoch; gradients are clipped by the loop
(``pretrain.clip_grad``). Fine-tuning starts from the *teacher* backbone.

Note: CASS's authors used a third-party DINO wrapper whose defaults differ (student temperature
0.9); we follow the DINO paper (PAPER.md).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from cass_hpc.data.transforms import MultiCrop
from cass_hpc.methods.base import PretrainMethod, Progress, StepOutput, Views


def dino_loss(
    student_out: list[Tensor],
    teacher_out: list[Tensor],
    center: Tensor,
    *,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> Tensor:
    """DINO's loss (Caron et al. 2021, Alg. 1): mean over (teacher crop i, student crop v ≠ i) of
    ``H(softmax((t_i - c) / τ_t), softmax(s_v / τ_s))``, each averaged over the batch.

    ``student_out``: K-dim logits of every crop, global crops first; ``teacher_out``: logits of
    the global crops; ``center``: (K,) running mean of the teacher logits. No gradient flows into
    the teacher terms.

    >>> s = [torch.zeros(2, 4)] * 3; t = [torch.zeros(2, 4)] * 2
    >>> round(float(dino_loss(s, t, torch.zeros(4))), 4)  # uniform vs uniform: log 4
    1.3863
    """
    if not teacher_out or len(student_out) < len(teacher_out):
        raise ValueError(
            f"dino_loss needs >= 1 teacher crop and at least as many student crops, got "
            f"{len(teacher_out)} and {len(student_out)}"
        )
    if student_temp <= 0 or teacher_temp <= 0:
        raise ValueError(f"temperatures must be > 0, got {student_temp}, {teacher_temp}")
    log_p_student = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student_out]
    p_teacher = [
        F.softmax((t.float() - center) / teacher_temp, dim=-1).detach() for t in teacher_out
    ]
    total, pairs = student_out[0].new_zeros((), dtype=torch.float32), 0
    for i, q in enumerate(p_teacher):
        for v, log_p in enumerate(log_p_student):
            if v == i:  # same view seen by teacher and student: skipped
                continue
            total = total + (-q * log_p).sum(dim=-1).mean()
            pairs += 1
    if pairs == 0:
        raise ValueError("dino_loss: no (teacher, student) pair of different views")
    return total / pairs


def update_center(center: Tensor, teacher_out: list[Tensor], momentum: float = 0.9) -> Tensor:
    """DINO's centre: EMA of the batch mean of the teacher logits (all global crops)."""
    batch_center = torch.cat([t.detach().float() for t in teacher_out]).mean(dim=0)
    return center * momentum + batch_center * (1 - momentum)


def teacher_momentum(fraction: float, base: float = 0.996) -> float:
    """Cosine schedule from ``base`` at the start to 1 at the end of training."""
    return 1 - (1 - base) * (math.cos(math.pi * fraction) + 1) / 2


def teacher_temperature(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """Linear warm-up from ``warmup_temp`` to ``temp`` over ``warmup_epochs``, then ``temp``."""
    if warmup_epochs <= 0 or epoch > warmup_epochs:
        return temp
    return warmup_temp + (temp - warmup_temp) * (epoch - 1) / warmup_epochs


class DINOHead(nn.Module):
    """3-layer MLP → L2-normalise → weight-normalised linear layer with ``out_dim`` prototypes."""

    def __init__(
        self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
        norm_last_layer: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )  # fmt: skip
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        gain = self.last_layer.parametrizations.weight.original0
        gain.data.fill_(1.0)
        gain.requires_grad = not norm_last_layer  # DINO fixes the norm to 1 by default

    def forward(self, features: Tensor) -> Tensor:
        return self.last_layer(F.normalize(self.mlp(features), dim=-1, p=2))


class StudentTeacherNet(nn.Module):
    """Backbone + head; multi-crop inputs are grouped by resolution (one forward per size)."""

    def __init__(self, backbone: nn.Module, head: DINOHead) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, crops: list[Tensor]) -> list[Tensor]:
        outputs: list[Tensor] = []
        start = 0
        while start < len(crops):
            end = start
            while end < len(crops) and crops[end].shape[-2:] == crops[start].shape[-2:]:
                end += 1
            features = self.backbone(torch.cat(crops[start:end]))
            outputs.extend(self.head(features).chunk(end - start))
            start = end
        return outputs


@dataclass(frozen=True)
class DINOConfig:
    """Mirrors ``conf/method/dino.yaml: params`` (DINO paper defaults)."""

    out_dim: int = 65536  # K prototypes
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    norm_last_layer: bool = True
    global_crops_scale: tuple[float, float] = (0.4, 1.0)
    local_crops: int = 6  # N local crops, seen by the student only
    local_crops_scale: tuple[float, float] = (0.05, 0.4)
    local_crop_size: int | None = None  # pixels; None = image_size * 96 / 224, as DINO
    student_temp: float = 0.1
    teacher_temp: float = 0.07  # after warm-up
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 30
    center_momentum: float = 0.9
    momentum_teacher: float = 0.996  # EMA momentum at the start; cosine to 1
    freeze_last_layer_epochs: int = 1

    def __post_init__(self) -> None:
        for name in ("student_temp", "teacher_temp", "warmup_teacher_temp"):
            if (value := getattr(self, name)) <= 0:
                raise ValueError(f"method.params.{name} must be > 0, got {value}")
        for name in ("center_momentum", "momentum_teacher"):
            if not 0 <= (value := getattr(self, name)) <= 1:
                raise ValueError(f"method.params.{name} must be in [0, 1], got {value}")
        for name in ("local_crops", "warmup_teacher_temp_epochs", "freeze_last_layer_epochs"):
            if (value := getattr(self, name)) < 0:
                raise ValueError(f"method.params.{name} must be >= 0, got {value}")
        if self.local_crop_size is not None and self.local_crop_size < 8:
            raise ValueError(
                f"method.params.local_crop_size must be >= 8 pixels or null, "
                f"got {self.local_crop_size}"
            )


class DINO(PretrainMethod):
    """DINO for one backbone (the arm named ``arm``); the loop optimises only the student."""

    name = "dino"

    def __init__(self, arm: str, backbone: nn.Module, feature_dim: int, cfg: DINOConfig) -> None:
        super().__init__()
        self.arm, self.cfg = arm, cfg
        head = DINOHead(
            feature_dim, cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim, cfg.norm_last_layer
        )
        student = StudentTeacherNet(backbone, head)
        self.arms = nn.ModuleDict({arm: student})
        self.teacher = copy.deepcopy(student)
        for p in self.teacher.parameters():
            p.requires_grad = False
        self.register_buffer("center", torch.zeros(cfg.out_dim))

    def train_transform(self, image_size: int) -> MultiCrop:
        local = self.cfg.local_crop_size or max(8, round(image_size * 96 / 224))
        return MultiCrop(
            image_size, local, self.cfg.local_crops, self.cfg.global_crops_scale,
            self.cfg.local_crops_scale,
        )  # fmt: skip

    def training_step(self, views: Views, progress: Progress) -> StepOutput:
        if not isinstance(views, list) or len(views) < 2:
            raise ValueError("DINO needs a list of >= 2 crops per image (2 global first)")
        student_out = self.arms[self.arm](views)
        with torch.no_grad():  # teacher in train mode (batch statistics), as in DINO's code
            teacher_out = self.teacher(views[:2])
        temp = teacher_temperature(
            progress.epoch, self.cfg.warmup_teacher_temp, self.cfg.teacher_temp,
            min(self.cfg.warmup_teacher_temp_epochs, progress.epochs),
        )  # fmt: skip
        loss = dino_loss(
            student_out, teacher_out, self.center, student_temp=self.cfg.student_temp,
            teacher_temp=temp,
        )  # fmt: skip
        if self.training:
            self.center.copy_(update_center(self.center, teacher_out, self.cfg.center_momentum))
        return StepOutput(loss=loss, embeddings={self.arm: teacher_out[0].detach()})

    def before_optimizer_step(self, progress: Progress) -> None:
        if progress.epoch <= self.cfg.freeze_last_layer_epochs:
            for p in self.arms[self.arm].head.last_layer.parameters():
                p.grad = None

    @torch.no_grad()
    def after_optimizer_step(self, progress: Progress) -> None:
        m = teacher_momentum(progress.fraction, self.cfg.momentum_teacher)
        student = self.arms[self.arm]
        for t, s in zip(self.teacher.parameters(), student.parameters(), strict=True):
            t.mul_(m).add_(s.detach(), alpha=1 - m)

    def trained_arms(self) -> dict[str, nn.Module]:
        return {self.arm: self.teacher.backbone}
