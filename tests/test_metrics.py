"""Test metrics: AUROC defined only where a class has positives and negatives, per-class
results and the confusion matrix."""

from __future__ import annotations

import pytest
import torch

from cass_hpc.metrics import class_auroc, classification_metrics, per_class_metrics


def test_auroc_leaves_out_a_class_absent_from_the_split_instead_of_counting_it_zero() -> None:
    logits = torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [2.0, 1.0, 0], [0, 2.0, 1.0]])
    targets = torch.tensor([0, 1, 0, 1])  # class 2 never occurs
    assert class_auroc(logits, targets, 3) == [1.0, 1.0, None]
    assert classification_metrics(logits, targets, 3)["auroc"] == 1.0


def test_auroc_ranks_probabilities_one_vs_rest() -> None:
    logits = torch.tensor([[2.0, 0], [0, 1.0], [1.0, 0], [0.5, 0]])
    targets = torch.tensor([0, 1, 1, 0])
    # class 1 scores: p1 = sigmoid(l1 - l0) → ranks 0.12, 0.73, 0.27, 0.38; positives are 2nd, 3rd
    assert class_auroc(logits, targets, 2)[1] == pytest.approx(0.75)


def test_per_class_results_and_confusion_matrix_single_label() -> None:
    logits = torch.eye(3)[[0, 1, 1, 2, 2]] * 5
    targets = torch.tensor([0, 1, 2, 2, 2])
    result = per_class_metrics(logits, targets, ["a", "b", "c"])
    assert result["names"] == ["a", "b", "c"] and result["support"] == [1, 1, 3]
    assert result["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 2]]
    assert result["precision"] == pytest.approx([1.0, 0.5, 1.0])
    assert result["recall"] == pytest.approx([1.0, 1.0, 2 / 3])


def test_per_label_results_multilabel_have_no_confusion_matrix() -> None:
    logits = torch.tensor([[3.0, -3.0], [3.0, 3.0], [-3.0, -3.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])  # x: no negative
    result = per_class_metrics(logits, targets, ["x", "y"], multilabel=True)
    assert "confusion" not in result and result["support"] == [3, 2]
    assert result["recall"] == pytest.approx([2 / 3, 0.5]) and result["auroc"] == [None, 0.75]
    assert classification_metrics(logits, targets, 2, multilabel=True)["auroc"] == 0.75
