"""Seeded stratified splits and label-fraction subsets."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cass_hpc.data.splits import label_fraction_indices, label_fraction_notice, stratified_split

FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


def _labels(counts: list[int], seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(labels)


def test_stratified_split_keeps_class_proportions_and_partitions_indices() -> None:
    labels = _labels([100, 50, 10, 3])
    parts = stratified_split(labels, FRACTIONS, seed=0)
    assert list(parts) == ["train", "val", "test"]
    per_class = {
        name: np.bincount(labels[idx], minlength=4).tolist() for name, idx in parts.items()
    }
    assert per_class == {"train": [70, 35, 7, 1], "val": [10, 5, 1, 1], "test": [20, 10, 2, 1]}
    joined = np.concatenate(list(parts.values()))
    assert sorted(joined.tolist()) == list(range(labels.size))
    assert all(np.all(np.diff(idx) > 0) for idx in parts.values())  # sorted, no duplicates


def test_stratified_split_is_deterministic_for_a_seed() -> None:
    labels = _labels([40, 25, 12])
    first, again = stratified_split(labels, FRACTIONS, 3), stratified_split(labels, FRACTIONS, 3)
    other = stratified_split(labels, FRACTIONS, 4)
    assert all(np.array_equal(first[k], again[k]) for k in FRACTIONS)
    assert not all(np.array_equal(first[k], other[k]) for k in FRACTIONS)


def test_stratified_split_rejects_fractions_not_summing_to_one() -> None:
    with pytest.raises(ValueError, match="must sum to 1"):
        stratified_split(_labels([10, 10]), {"train": 0.7, "test": 0.2}, 0)


def test_stratified_split_names_a_class_too_small_for_the_splits() -> None:
    with pytest.raises(ValueError, match="class 2 has 2 images but the 3 splits"):
        stratified_split(_labels([10, 10, 2]), FRACTIONS, 0)


def test_label_fraction_keeps_every_class_even_at_one_percent() -> None:
    labels = _labels([500, 30, 2])
    chosen = label_fraction_indices(labels, 0.01, seed=0, num_classes=3)
    assert np.bincount(labels[chosen], minlength=3).tolist() == [5, 1, 1]
    assert np.all(np.diff(chosen) > 0)


def test_label_fraction_is_seeded_and_reproducible() -> None:
    labels = _labels([200, 100, 50])
    same = [label_fraction_indices(labels, 0.1, seed=5, num_classes=3) for _ in range(2)]
    other = label_fraction_indices(labels, 0.1, seed=6, num_classes=3)
    assert np.array_equal(same[0], same[1])
    assert not np.array_equal(same[0], other)


def test_label_fraction_subsets_are_nested_and_full_fraction_is_everything() -> None:
    labels = _labels([300, 120, 40])
    one = label_fraction_indices(labels, 0.01, seed=1, num_classes=3)
    ten = label_fraction_indices(labels, 0.1, seed=1, num_classes=3)
    assert set(one.tolist()) <= set(ten.tolist())
    assert np.array_equal(label_fraction_indices(labels, 1.0, 1, 3), np.arange(labels.size))


def test_label_fraction_errors_on_absent_class() -> None:
    labels = _labels([20, 20, 20])
    with pytest.raises(
        ValueError,
        match=r"^class 3 has no training images; cannot fine-tune "
        r"at label_fraction=0\.01$",
    ):
        label_fraction_indices(labels, 0.01, seed=0, num_classes=4)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_label_fraction_outside_unit_interval_is_rejected(fraction: float) -> None:
    with pytest.raises(ValueError, match="label_fraction must be in"):
        label_fraction_indices(_labels([5, 5]), fraction, 0, 2)


def test_a_fraction_raised_to_one_image_per_class_is_logged_and_told(caplog) -> None:
    labels = _labels([500, 30, 2])
    with caplog.at_level(logging.WARNING, logger="cass_hpc.data.splits"):
        chosen = label_fraction_indices(labels, 0.01, seed=0, num_classes=3)
    notice = label_fraction_notice(labels, 0.01, chosen)
    assert notice == (
        "label_fraction=0.01 rounds to 0 images for 2 of 3 classes, raised to 1 each: images "
        "per class used 5, 1, 1 (7 of 532 training images)"
    )
    assert [r.getMessage() for r in caplog.records] == [notice]


def test_a_fraction_every_class_reaches_has_no_notice(caplog) -> None:
    labels = _labels([200, 100, 50])
    with caplog.at_level(logging.WARNING, logger="cass_hpc.data.splits"):
        chosen = label_fraction_indices(labels, 0.1, seed=0, num_classes=3)
    assert label_fraction_notice(labels, 0.1, chosen) is None and not caplog.records
    assert label_fraction_notice(labels, 1.0, np.arange(labels.size)) is None


def test_a_multilabel_subset_grown_to_hold_every_label_is_told() -> None:
    y = np.eye(4, dtype=np.int64)[np.arange(40) % 4]
    chosen = label_fraction_indices(y, 0.001, seed=0, num_classes=4)
    assert label_fraction_notice(y, 0.001, chosen) == (
        "label_fraction=0.001 asks for 0 of 40 training images; 4 are used so that every "
        "label is present once"
    )
