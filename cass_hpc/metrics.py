"""Test/validation metrics (CASS §4.3, App. G): macro-F1, micro-F1, balanced accuracy."""

from __future__ import annotations

from torch import Tensor
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_f1_score,
    multilabel_f1_score,
    multilabel_recall,
    multilabel_specificity,
)


def classification_metrics(
    logits: Tensor,
    targets: Tensor,
    num_classes: int,
    *,
    multilabel: bool = False,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Metrics over a whole split, computed once from all predictions (never accumulated
    across epochs, unlike the released notebooks).

    Single-label: balanced accuracy = macro recall (the ISIC-2019 metric). Multi-label (the
    autoimmune set): a label is predicted when its sigmoid exceeds ``threshold``; F1 macro/micro
    over labels, balanced accuracy = mean over labels of (recall + specificity) / 2.
    """
    if multilabel:
        probs, target = logits.float().sigmoid(), targets.int()
        args = (probs, target, num_classes)
        recall = multilabel_recall(*args, threshold=threshold, average="macro")
        specificity = multilabel_specificity(*args, threshold=threshold, average="macro")
        return {
            "macro_f1": float(multilabel_f1_score(*args, threshold=threshold, average="macro")),
            "micro_f1": float(multilabel_f1_score(*args, threshold=threshold, average="micro")),
            "balanced_accuracy": float((recall + specificity) / 2),
        }
    preds = logits.argmax(dim=1)
    return {
        "macro_f1": float(multiclass_f1_score(preds, targets, num_classes, average="macro")),
        "micro_f1": float(multiclass_f1_score(preds, targets, num_classes, average="micro")),
        "balanced_accuracy": float(
            multiclass_accuracy(preds, targets, num_classes, average="macro")
        ),
    }
