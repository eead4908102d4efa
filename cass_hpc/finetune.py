"""End-to-end fine-tuning of one net at one label fraction, then one evaluation on test.

CASS §4.2 / App. F.3: all parameters trained, Adam 3e-4 with cosine annealing, at most 50 epochs,
early stopping with patience 5 on validation loss, batch 16, the pretraining augmentations, focal
loss (alpha 1, gamma 2, class weights from the training labels). The weights with the lowest
validation loss are evaluated once on the test split. The supervised baseline runs through the
same code from random init.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from cass_hpc.losses import class_weights, focal_loss
from cass_hpc.metrics import classification_metrics
from cass_hpc.models import Arm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig:
    """Mirrors ``conf/finetune/*.yaml``."""

    max_epochs: int = 50  # paper: at most 50
    patience: int = 5  # epochs without a lower validation loss before stopping
    batch_size: int = 16
    lr: float = 3e-4  # Adam, cosine-annealed over max_epochs
    focal_alpha: float = 1.0
    focal_gamma: float = 2.0
    class_weights: str = "minmax"  # minmax (paper) | frequency (notebooks) | inverse | none
    num_workers: int = 0


@dataclass
class FinetuneResult:
    metrics: dict[str, float]  # test split, best-on-validation weights
    wall_s: float
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    n_train: int
    class_weights: list[float]
    history: list[dict[str, float]] = field(default_factory=list)


@torch.no_grad()
def evaluate(
    arm: Arm,
    loader: DataLoader,
    num_classes: int,
    weight: torch.Tensor,
    cfg: FinetuneConfig,
    accelerator: Accelerator,
) -> dict[str, float]:
    """Loss (same focal loss as training) and metrics over a whole split."""
    arm.eval()
    logits, targets = [], []
    for images, labels in loader:
        with accelerator.autocast():
            logits.append(arm(images.to(accelerator.device)).float().cpu())
        targets.append(labels)
    all_logits, all_targets = torch.cat(logits), torch.cat(targets)
    loss = focal_loss(
        all_logits, all_targets, alpha=cfg.focal_alpha, gamma=cfg.focal_gamma, weight=weight
    )
    return {"loss": float(loss), **classification_metrics(all_logits, all_targets, num_classes)}


def finetune(
    arm: Arm,
    train: DataLoader,
    val: DataLoader,
    test: DataLoader,
    *,
    num_classes: int,
    train_labels: np.ndarray,
    cfg: FinetuneConfig,
    accelerator: Accelerator,
) -> FinetuneResult:
    """Fine-tune ``arm`` (its head already ``num_classes`` wide) and evaluate it on ``test``."""
    if cfg.max_epochs < 1 or cfg.patience < 1:
        raise ValueError(f"finetune needs max_epochs, patience >= 1, got {cfg}")
    weight = class_weights(np.bincount(train_labels, minlength=num_classes), cfg.class_weights)
    optimizer = torch.optim.Adam(arm.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.max_epochs)
    arm, optimizer = accelerator.prepare(arm, optimizer)
    device = accelerator.device

    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(arm.state_dict())
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    epoch = 0
    for epoch in range(1, cfg.max_epochs + 1):
        arm.train()
        total, steps = 0.0, 0
        for images, labels in train:
            optimizer.zero_grad(set_to_none=True)
            with accelerator.autocast():
                logits = arm(images.to(device))
            loss = focal_loss(
                logits,
                labels.to(device),
                alpha=cfg.focal_alpha,
                gamma=cfg.focal_gamma,
                weight=weight,
            )
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"fine-tuning loss is {float(loss.detach())} at epoch {epoch}"
                )
            accelerator.backward(loss)
            optimizer.step()
            total, steps = total + float(loss.detach()), steps + 1
        scheduler.step()
        val_metrics = evaluate(arm, val, num_classes, weight, cfg, accelerator)
        history.append(
            {
                "epoch": epoch,
                "train_loss": total / max(steps, 1),
                **{f"val_{k}": v for k, v in val_metrics.items()},
            }
        )
        log.info(
            "finetune epoch %d/%d train_loss %.4f val_loss %.4f val_macro_f1 %.4f",
            epoch,
            cfg.max_epochs,
            history[-1]["train_loss"],
            val_metrics["loss"],
            val_metrics["macro_f1"],
        )
        if val_metrics["loss"] < best_loss:
            best_loss, best_epoch = val_metrics["loss"], epoch
            best_state = copy.deepcopy(arm.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            log.info("early stop at epoch %d (best %d)", epoch, best_epoch)
            break
    wall_s = time.perf_counter() - t0

    arm.load_state_dict(best_state)
    test_metrics = evaluate(arm, test, num_classes, weight, cfg, accelerator)
    return FinetuneResult(
        metrics=test_metrics,
        wall_s=wall_s,
        epochs_run=epoch,
        best_epoch=best_epoch,
        stopped_early=epoch < cfg.max_epochs,
        n_train=len(train_labels),
        class_weights=[float(w) for w in weight],
        history=history,
    )
