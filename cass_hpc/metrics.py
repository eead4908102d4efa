"""Test/validation metrics (CASS §4.3, App. G): macro-F1, micro-F1, balanced accuracy."""

from __future__ import annotations

from torch import Tensor
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score


def classification_metrics(logits: Tensor, targets: Tensor, num_classes: int) -> dict[str, float]:
    """Metrics over a whole split, computed once from all predictions (never accumulated
    across epochs, unlike the released notebooks). Balanced accuracy = macro recall, the
    ISIC-2019 metric."""
    preds = logits.argmax(dim=1)
    return {
        "macro_f1": float(multiclass_f1_score(preds, targets, num_classes, average="macro")),
        "micro_f1": float(multiclass_f1_score(preds, targets, num_classes, average="micro")),
        "balanced_accuracy": float(
            multiclass_accuracy(preds, targets, num_classes, average="macro")
        ),
    }
