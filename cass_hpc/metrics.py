"""Test/validation metrics (CASS §4.3, App. G): macro-F1, micro-F1, balanced accuracy, plus
AUROC and per-class results (ours: what a medical-imaging reviewer asks for next)."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    binary_auroc,
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
    multilabel_f1_score,
    multilabel_precision,
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
) -> dict[str, float | None]:
    """Metrics over a whole split, computed once from all predictions (never accumulated
    across epochs, unlike the released notebooks).

    Single-label: balanced accuracy = macro recall (the ISIC-2019 metric). Multi-label (the
    autoimmune set): a label is predicted when its sigmoid exceeds ``threshold``; F1 macro/micro
    over labels, balanced accuracy = mean over labels of (recall + specificity) / 2. ``auroc``:
    one-vs-rest AUROC per class (per label), averaged over the classes that have both a positive
    and a negative example in the split (None if none has).
    """
    auroc = _mean_defined(class_auroc(logits, targets, num_classes, multilabel=multilabel))
    if multilabel:
        probs, target = logits.float().sigmoid(), targets.int()
        args = (probs, target, num_classes)
        recall = multilabel_recall(*args, threshold=threshold, average="macro")
        specificity = multilabel_specificity(*args, threshold=threshold, average="macro")
        return {
            "macro_f1": float(multilabel_f1_score(*args, threshold=threshold, average="macro")),
            "micro_f1": float(multilabel_f1_score(*args, threshold=threshold, average="micro")),
            "balanced_accuracy": float((recall + specificity) / 2),
            "auroc": auroc,
        }
    preds = logits.argmax(dim=1)
    return {
        "macro_f1": float(multiclass_f1_score(preds, targets, num_classes, average="macro")),
        "micro_f1": float(multiclass_f1_score(preds, targets, num_classes, average="micro")),
        "balanced_accuracy": float(
            multiclass_accuracy(preds, targets, num_classes, average="macro")
        ),
        "auroc": auroc,
    }


def probabilities(logits: Tensor, *, multilabel: bool) -> Tensor:
    """What the net predicts: softmax over classes, or a sigmoid per label (multi-label)."""
    return logits.float().sigmoid() if multilabel else logits.float().softmax(dim=1)


def class_auroc(
    logits: Tensor, targets: Tensor, num_classes: int, *, multilabel: bool = False
) -> list[float | None]:
    """One-vs-rest AUROC of each class (label); None where the split holds no positive or no
    negative example of it (undefined, and torchmetrics would return a silent 0)."""
    probs = probabilities(logits, multilabel=multilabel)
    positives = targets.int() if multilabel else torch.nn.functional.one_hot(targets, num_classes)
    scores: list[float | None] = []
    for cls in range(num_classes):
        column = positives[:, cls]
        if column.min() == column.max():  # all positive or all negative: undefined
            scores.append(None)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores.append(float(binary_auroc(probs[:, cls], column)))
    return scores


def per_class_metrics(
    logits: Tensor,
    targets: Tensor,
    class_names: list[str],
    *,
    multilabel: bool = False,
    threshold: float = 0.5,
) -> dict[str, list]:
    """Per class (label): support, precision, recall, F1 and AUROC; single-label also the
    confusion matrix (rows true class, columns predicted). A class never predicted has
    precision 0; a class absent from the split has recall 0 and AUROC None."""
    num_classes = len(class_names)
    if multilabel:
        probs, target = logits.float().sigmoid(), targets.int()
        args = (probs, target, num_classes)
        kw = {"threshold": threshold, "average": None}
        precision, recall = multilabel_precision(*args, **kw), multilabel_recall(*args, **kw)
        f1, support = multilabel_f1_score(*args, **kw), target.sum(dim=0)
        extra: dict[str, list] = {}
    else:
        preds = logits.argmax(dim=1)
        args = (preds, targets, num_classes)
        precision = multiclass_precision(*args, average=None)
        recall = multiclass_recall(*args, average=None)
        f1 = multiclass_f1_score(*args, average=None)
        support = torch.bincount(targets, minlength=num_classes)
        extra = {"confusion": multiclass_confusion_matrix(*args).tolist()}
    return {
        "names": list(class_names),
        "support": [int(s) for s in support],
        "precision": [float(p) for p in precision],
        "recall": [float(r) for r in recall],
        "f1": [float(f) for f in f1],
        "auroc": class_auroc(logits, targets, num_classes, multilabel=multilabel),
        **extra,
    }


def _mean_defined(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return sum(defined) / len(defined) if defined else None
