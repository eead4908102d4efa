"""Seeded, stratified index selection: dataset splits and fine-tuning label fractions.

The paper (§4.2, App. F.1) splits most datasets 70/10/20 and fine-tunes on 1 %, 10 % and 100 %
of the training labels. The released notebooks split without a seed and sampled label fractions
unstratified; here both are stratified and seeded (see PAPER.md, "our decisions"), so a rare class
never vanishes from a split or a 1 % subset and every run can be reproduced.

Each class is shuffled by its own generator ``np.random.default_rng([seed, salt, class])``, so
adding images of one class does not reshuffle the others, and the label-fraction subsets of one
seed are nested (the 1 % subset is contained in the 10 % subset).

Usage::

    parts = stratified_split(labels, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    subset = label_fraction_indices(labels[parts["train"]], 0.01, seed=0, num_classes=4)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from cass_hpc.data.multilabel import multilabel_fraction_indices, multilabel_split

log = logging.getLogger(__name__)
_SPLIT_SALT = 0  # separate random streams for splitting and for label-fraction sampling
_FRACTION_SALT = 1


def _as_labels(labels: np.ndarray) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"labels must be a 1-D integer array, got {array.dtype} {array.shape}")
    if array.size and array.min() < 0:
        raise ValueError(f"labels must be non-negative class indices, got {int(array.min())}")
    return array.astype(np.int64, copy=False)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _largest_remainder(count: int, fractions: np.ndarray) -> np.ndarray:
    """Sizes summing to ``count``, proportional to ``fractions``; ≥ 1 per positive fraction."""
    quotas = np.round(count * fractions, 9)  # 0.7 * 10 must be 7, not 6.999…
    sizes = np.floor(quotas).astype(np.int64)
    order = np.argsort(-(quotas - sizes), kind="stable")
    sizes[order[: count - int(sizes.sum())]] += 1
    for empty in np.flatnonzero((fractions > 0) & (sizes == 0)):
        sizes[int(np.argmax(sizes))] -= 1  # the largest split is ≥ 2 when count ≥ #splits
        sizes[empty] += 1
    return sizes


def stratified_split(
    labels: np.ndarray, fractions: Mapping[str, float], seed: int
) -> dict[str, np.ndarray]:
    """Split indices of ``labels`` into named parts with the same class proportions.

    ``fractions`` maps split name → fraction (≥ 0, summing to 1 ± 1e-6), e.g.
    ``{"train": 0.7, "val": 0.1, "test": 0.2}``. Per class, indices are shuffled with a seeded
    generator and cut by largest-remainder rounding, so every split with a positive fraction gets
    at least one member of every class. Returns sorted int64 index arrays, in ``fractions`` order;
    the result depends only on ``labels``, ``fractions`` and ``seed``. Multi-hot ``(n, C)``
    labels are split by iterative stratification (`multilabel.multilabel_split`).
    """
    if np.ndim(labels) == 2:
        return multilabel_split(labels, fractions, _check_seed(seed))
    labels = _as_labels(labels)
    seed = _check_seed(seed)
    if not fractions:
        raise ValueError("fractions must name at least one split, e.g. {'train': 0.7, ...}")
    names = list(fractions)
    weights = np.asarray([float(fractions[n]) for n in names], dtype=np.float64)
    if np.any(weights < 0) or not np.all(np.isfinite(weights)):
        raise ValueError(f"split fractions must be finite and ≥ 0, got {dict(fractions)}")
    if abs(weights.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"split fractions must sum to 1, got {dict(fractions)} (sum {weights.sum():.6g})"
        )
    needed = int(np.count_nonzero(weights > 0))
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    classes, counts = np.unique(labels, return_counts=True)
    for cls, count in zip(classes.tolist(), counts.tolist(), strict=True):
        if count < needed:
            raise ValueError(
                f"class {cls} has {count} images but the {needed} splits "
                f"({', '.join(n for n, w in zip(names, weights, strict=True) if w > 0)}) "
                f"need at least one each; add images of that class or drop it"
            )
        rng = np.random.default_rng([seed, _SPLIT_SALT, cls])
        shuffled = rng.permutation(np.flatnonzero(labels == cls))
        bounds = np.cumsum(_largest_remainder(count, weights))[:-1]
        for name, piece in zip(names, np.split(shuffled, bounds), strict=True):
            parts[name].append(piece)
    return {
        name: np.sort(np.concatenate(pieces)) if pieces else np.zeros(0, dtype=np.int64)
        for name, pieces in parts.items()
    }


def label_fraction_indices(
    labels: np.ndarray, fraction: float, seed: int, num_classes: int
) -> np.ndarray:
    """The labelled training subset used for fine-tuning at ``fraction`` (paper: 1 %, 10 %, 100 %).

    Per class, keeps ``max(1, round(fraction * n_c))`` examples (rounded half up) chosen by a
    seeded generator, so every class stays represented even at 1 %. ``fraction == 1`` returns all
    indices. Subsets of one seed are nested across fractions. Returns sorted int64 indices into
    ``labels``. When that keeps more images than ``fraction`` asks for, a warning says so
    (`label_fraction_notice`).
    """
    chosen = _fraction_indices(labels, fraction, seed, num_classes)
    notice = label_fraction_notice(labels, fraction, chosen)
    if notice:
        log.warning(notice)
    return chosen


def label_fraction_notice(labels: np.ndarray, fraction: float, chosen: np.ndarray) -> str | None:
    """A warning when the subset ``chosen`` (from `label_fraction_indices`) holds more images
    than ``fraction`` of ``labels`` asks for because every class (label) keeps one; else None."""
    labels, fraction = np.asarray(labels), float(fraction)
    if labels.ndim == 2:  # multi-hot: the subset grows until every label is present
        asked = int(np.floor(fraction * len(labels) + 0.5))
        if len(chosen) <= asked:
            return None
        return (
            f"label_fraction={fraction:g} asks for {asked} of {len(labels)} training images; "
            f"{len(chosen)} are used so that every label is present once"
        )
    counts = np.bincount(labels, minlength=int(labels.max(initial=-1)) + 1)
    asked = np.floor(fraction * counts + 0.5).astype(np.int64)
    raised = np.flatnonzero((asked == 0) & (counts > 0))
    if not len(raised):
        return None
    used = np.bincount(labels[chosen], minlength=len(counts))
    return (
        f"label_fraction={fraction:g} rounds to 0 images for {len(raised)} of {len(counts)} "
        f"classes, raised to 1 each: images per class used {', '.join(map(str, used.tolist()))} "
        f"({len(chosen)} of {len(labels)} training images)"
    )


def _fraction_indices(
    labels: np.ndarray, fraction: float, seed: int, num_classes: int
) -> np.ndarray:
    if np.ndim(labels) == 2:  # multi-hot: keep every label present
        return multilabel_fraction_indices(labels, float(fraction), _check_seed(seed))
    labels = _as_labels(labels)
    seed = _check_seed(seed)
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1], got {fraction}")
    if labels.size and labels.max() >= num_classes:
        raise ValueError(
            f"label {int(labels.max())} is outside 0..{num_classes - 1} (num_classes={num_classes})"
        )
    counts = np.bincount(labels, minlength=num_classes)
    for cls in range(num_classes):
        if counts[cls] == 0:
            raise ValueError(
                f"class {cls} has no training images; cannot fine-tune at "
                f"label_fraction={fraction:g}"
            )
    if fraction == 1.0:
        return np.arange(labels.size, dtype=np.int64)
    chosen = []
    for cls in range(num_classes):
        keep = max(1, int(np.floor(fraction * counts[cls] + 0.5)))
        rng = np.random.default_rng([seed, _FRACTION_SALT, cls])
        chosen.append(rng.permutation(np.flatnonzero(labels == cls))[:keep])
    return np.sort(np.concatenate(chosen))
