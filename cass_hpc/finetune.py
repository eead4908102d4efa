"""Fine-tuning of one net at one label fraction, then one evaluation on test.

CASS §4.2 / App. F.3 (``mode="e2e"``, the default): all parameters trained, Adam 3e-4 with cosine
annealing, at most 50 epochs, early stopping with patience 5 on validation loss, batch 16, the
pretraining augmentations, focal loss (alpha 1, gamma 2, class weights from the training labels).
The weights with the lowest validation loss are evaluated once on the test split. The supervised
baseline runs through the same code from random init.

``mode="linear"`` (ours, beyond the paper) is the linear-probe read-out of self-supervised
learning: the backbone frozen, in eval mode (BatchNorm statistics fixed too), and only the timm
classifier head trained, with everything else as above.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from cass_hpc import preempt
from cass_hpc.data.loader import set_position
from cass_hpc.losses import (
    CLASS_WEIGHT_SCHEMES,
    class_weights,
    focal_loss,
    sigmoid_focal_loss,
)
from cass_hpc.metrics import classification_metrics, per_class_metrics, probabilities
from cass_hpc.models import Arm
from cass_hpc.stage import ResumableStage

log = logging.getLogger(__name__)
FINETUNE_MODES = ("e2e", "linear")


@dataclass(frozen=True)
class FinetuneConfig:
    """Mirrors ``conf/finetune/*.yaml``."""

    max_epochs: int = 50  # paper: at most 50
    patience: int = 5  # epochs without a lower validation loss before stopping
    batch_size: int = 16
    lr: float = 3e-4  # Adam, cosine-annealed over max_epochs
    focal_alpha: float = 1.0
    focal_gamma: float = 2.0
    class_weights: str = "inverse"  # inverse (ours) | minmax (paper) | frequency | none
    num_workers: int = 0
    threshold: float = 0.5  # multi-label: a label is predicted when its sigmoid exceeds this
    mode: str = "e2e"  # e2e (paper) | linear (frozen backbone, linear classifier: the SSL read-out)

    def __post_init__(self) -> None:
        at_least = {"max_epochs": 1, "patience": 0, "batch_size": 2, "num_workers": 0}
        for name, low in at_least.items():  # batch 2: BatchNorm trains on a batch
            if (value := getattr(self, name)) < low:
                raise ValueError(f"finetune.{name} must be >= {low}, got {value}")
        for name in ("lr", "focal_alpha", "focal_gamma"):
            if (value := getattr(self, name)) < 0:
                raise ValueError(f"finetune.{name} must be >= 0, got {value}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"finetune.threshold must be in (0, 1), got {self.threshold}")
        if self.mode not in FINETUNE_MODES:
            raise ValueError(f"finetune.mode must be one of {FINETUNE_MODES}, got {self.mode!r}")
        if self.class_weights not in CLASS_WEIGHT_SCHEMES:
            raise ValueError(
                f"finetune.class_weights must be one of {CLASS_WEIGHT_SCHEMES}, "
                f"got {self.class_weights!r}"
            )


@dataclass
class FinetuneResult:
    metrics: dict[str, float | None]  # test split, best-on-validation weights
    wall_s: float
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    n_train: int
    class_weights: list[float]
    mode: str = "e2e"  # FinetuneConfig.mode
    trained_parameters: int = 0  # the parameters the optimiser updated
    history: list[dict[str, float]] = field(default_factory=list)
    val_metrics: dict[str, float | None] = field(default_factory=dict)  # kept weights, val split
    per_class: dict[str, list] = field(default_factory=dict)  # test split, per class (label)
    # the kept weights' probabilities and targets: val_probs, val_targets, test_probs, …
    predictions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def record(self) -> dict:
        """The run's facts for results.json ``finetune`` (metrics and arrays go elsewhere)."""
        skip = {"metrics", "val_metrics", "per_class", "predictions"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


@dataclass(frozen=True)
class Objective:
    """The loss and metrics of one task: single-label (softmax focal loss) or multi-label
    (per-label sigmoid focal loss, metrics at ``cfg.threshold``)."""

    num_classes: int
    multilabel: bool
    weight: torch.Tensor  # per-class focal-loss weights
    cfg: FinetuneConfig

    @classmethod
    def for_labels(
        cls, train_labels: np.ndarray, num_classes: int, cfg: FinetuneConfig
    ) -> Objective:
        multilabel = train_labels.ndim == 2
        counts = (
            train_labels.sum(axis=0)
            if multilabel
            else np.bincount(train_labels, minlength=num_classes)
        )
        return cls(num_classes, multilabel, class_weights(counts, cfg.class_weights), cfg)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        focal = sigmoid_focal_loss if self.multilabel else focal_loss
        return focal(
            logits, targets, alpha=self.cfg.focal_alpha, gamma=self.cfg.focal_gamma,
            weight=self.weight,
        )  # fmt: skip

    def metrics(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float | None]:
        return classification_metrics(
            logits, targets, self.num_classes, multilabel=self.multilabel,
            threshold=self.cfg.threshold,
        )  # fmt: skip

    def per_class(self, logits: torch.Tensor, targets: torch.Tensor, names: list[str]) -> dict:
        return per_class_metrics(
            logits, targets, names, multilabel=self.multilabel, threshold=self.cfg.threshold
        )


def trainable_parameters(arm: Arm, mode: str) -> list[torch.nn.Parameter]:
    """The parameters fine-tuning trains: all of them (``e2e``), or only the timm classifier
    head's (``linear``: every other parameter gets ``requires_grad=False``)."""
    if mode == "e2e":
        return list(arm.parameters())
    if mode != "linear":
        raise ValueError(f"finetune.mode must be one of {FINETUNE_MODES}, got {mode!r}")
    head = list(arm.net.get_classifier().parameters())
    if not head:
        raise ValueError(
            f"finetune.mode=linear needs a classifier head to train, but "
            f"{type(arm.net).__name__} has none (num_classes 0?)"
        )
    head_ids = {id(p) for p in head}
    for parameter in arm.parameters():
        parameter.requires_grad_(id(parameter) in head_ids)
    return head


@torch.no_grad()
def predict(
    arm: Arm, loader: DataLoader, accelerator: Accelerator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets over a whole split, in the loader's order."""
    arm.eval()
    logits, targets = [], []
    for images, labels in loader:
        with accelerator.autocast():
            logits.append(arm(images.to(accelerator.device)).float().cpu())
        targets.append(labels)
    return torch.cat(logits), torch.cat(targets)


def evaluate(
    arm: Arm, loader: DataLoader, objective: Objective, accelerator: Accelerator
) -> dict[str, float | None]:
    """Loss (same focal loss as training) and metrics over a whole split."""
    logits, targets = predict(arm, loader, accelerator)
    return {"loss": float(objective.loss(logits, targets)), **objective.metrics(logits, targets)}


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
    checkpoint: Path | None = None,
    class_names: list[str] | None = None,
) -> FinetuneResult:
    """Fine-tune ``arm`` (its head already ``num_classes`` wide) and evaluate it on ``test``.
    ``train_labels`` are class indices, or multi-hot rows for a multi-label task. With
    ``cfg.mode == "linear"`` only the classifier head is trained and the rest of ``arm`` is
    frozen in place (``requires_grad`` False, eval mode: BatchNorm statistics unchanged). With
    ``checkpoint``, the state after every epoch is saved there (atomically) and a run that finds
    it resumes after that epoch with every random state restored: the same result as a run
    that was never interrupted. SIGUSR2 (SLURM's warning) saves at the next step boundary.
    The kept weights are evaluated on val and test once more at the end: metrics, per-class
    results (``class_names``, default ``class_0`` …) and the probabilities of every image."""
    if cfg.max_epochs < 1 or cfg.patience < 1:
        raise ValueError(f"finetune needs max_epochs, patience >= 1, got {cfg}")
    objective = Objective.for_labels(train_labels, num_classes, cfg)
    if (ignored := (objective.weight == 0).nonzero().flatten().tolist()) and num_classes > 1:
        log.warning(
            "class weight 0 for class(es) %s (finetune.class_weights=%s: min-max of the class "
            "counts gives the rarest class 0): the loss ignores them; "
            "finetune.class_weights=inverse weighs every class",
            ignored, cfg.class_weights,
        )  # fmt: skip
    trained = trainable_parameters(arm, cfg.mode)
    n_trained = sum(p.numel() for p in trained)
    log.info(
        "finetune.mode=%s: %d of %d parameters trained",
        cfg.mode, n_trained, sum(p.numel() for p in arm.parameters()),
    )  # fmt: skip
    optimizer = torch.optim.Adam(trained, lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.max_epochs)
    arm, optimizer = accelerator.prepare(arm, optimizer)
    device = accelerator.device

    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(arm.state_dict())
    history: list[dict[str, float]] = []
    wall_before, stopped = 0.0, False
    stage = ResumableStage(checkpoint, train.generator, "fine-tuning")
    if (state := stage.load()) is not None:
        arm.load_state_dict(state["arm"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        best_loss, best_epoch, best_state = state["best_loss"], state["best_epoch"], state["best"]
        history, wall_before, stopped = state["history"], state["wall_s"], state["stopped"]
    t0 = time.perf_counter()

    def payload() -> dict:
        return {
            "arm": arm.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "best_loss": best_loss,
            "best_epoch": best_epoch, "best": best_state, "history": history,
            "wall_s": wall_before + time.perf_counter() - t0, "stopped": stopped,
        }  # fmt: skip

    with preempt.guard():
        for epoch in range(stage.start_epoch, 1 if stopped else cfg.max_epochs + 1):
            arm.train(cfg.mode == "e2e")  # linear: BatchNorm statistics and dropout frozen too
            start_step = stage.epoch_steps_start()
            resumable = set_position(train, epoch, start_step) and checkpoint is not None
            sums = stage.sums({"step": 0, "total": 0.0})
            total, steps = sums["total"], sums["step"]
            for step, (images, labels) in enumerate(train, start=start_step + 1):
                optimizer.zero_grad(set_to_none=True)
                with accelerator.autocast():
                    logits = arm(images.to(device))
                loss = objective.loss(logits, labels.to(device))
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"fine-tuning loss is {float(loss.detach())} at epoch {epoch}, step {step}"
                    )
                accelerator.backward(loss)
                optimizer.step()
                total, steps = total + float(loss.detach()), steps + 1
                stage.after_step(epoch, step, train, resumable, payload, {"total": total})
            scheduler.step()
            val_metrics = evaluate(arm, val, objective, accelerator)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": total / max(steps, 1),
                    **{f"val_{k}": v for k, v in val_metrics.items()},
                }
            )
            log.info(
                "finetune epoch %d/%d train_loss %.4f val_loss %.4f val_macro_f1 %.4f",
                epoch, cfg.max_epochs, history[-1]["train_loss"], val_metrics["loss"],
                val_metrics["macro_f1"],
            )  # fmt: skip
            if val_metrics["loss"] < best_loss:
                best_loss, best_epoch = val_metrics["loss"], epoch
                best_state = copy.deepcopy(arm.state_dict())
            elif epoch - best_epoch >= cfg.patience:
                log.info("early stop at epoch %d (best %d)", epoch, best_epoch)
                stopped = True
            stage.after_epoch(epoch, payload())
            if stopped:
                break
    wall_s = wall_before + time.perf_counter() - t0
    epoch = len(history)

    arm.load_state_dict(best_state)
    names = class_names or [f"class_{c}" for c in range(num_classes)]
    val_logits, val_targets = predict(arm, val, accelerator)
    test_logits, test_targets = predict(arm, test, accelerator)
    loss = {"loss": float(objective.loss(test_logits, test_targets))}
    val_loss = {"loss": float(objective.loss(val_logits, val_targets))}
    multilabel = objective.multilabel
    return FinetuneResult(
        metrics={**loss, **objective.metrics(test_logits, test_targets)},
        val_metrics={**val_loss, **objective.metrics(val_logits, val_targets)},
        per_class=objective.per_class(test_logits, test_targets, names),
        predictions={
            "val_probs": probabilities(val_logits, multilabel=multilabel).numpy(),
            "val_targets": val_targets.numpy(),
            "test_probs": probabilities(test_logits, multilabel=multilabel).numpy(),
            "test_targets": test_targets.numpy(),
        },
        wall_s=wall_s,
        epochs_run=epoch,
        best_epoch=best_epoch,
        stopped_early=epoch < cfg.max_epochs,
        n_train=len(train_labels),
        class_weights=[float(w) for w in objective.weight],
        mode=cfg.mode,
        trained_parameters=n_trained,
        history=history,
    )
