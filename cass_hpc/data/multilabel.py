"""Seeded selection for multi-label data (several classes per image, e.g. the autoimmune set).

Labels are a multi-hot ``(n, num_classes)`` array. Splits use iterative stratification
(Sechidis et al. 2011): the rarest remaining label is placed first, each of its images into the
split that still needs that label most — after every split has had one image of it, when the
label has that many — so every label lands in every split where its count allows. Label
fractions keep every label present (≥ 1 image containing it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

_SPLIT_SALT, _FRACTION_SALT = 2, 3  # random streams distinct from the single-label ones


def as_multi_hot(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 2 or (num_classes is not None and array.shape[1] != num_classes):
        raise ValueError(f"multi-label labels must be (n, {num_classes or 'C'}), got {array.shape}")
    if array.size and not np.isin(array, (0, 1)).all():
        raise ValueError("multi-label labels must be 0/1 (multi-hot)")
    return array.astype(bool)


def multilabel_split(
    labels: np.ndarray, fractions: Mapping[str, float], seed: int
) -> dict[str, np.ndarray]:
    """Iterative stratification of a multi-hot ``labels`` array into named parts."""
    y = as_multi_hot(labels)
    names = list(fractions)
    frac = np.asarray([fractions[n] for n in names], dtype=np.float64)
    if (frac < 0).any() or abs(frac.sum() - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {dict(fractions)}")
    rng = np.random.default_rng([seed, _SPLIT_SALT])
    need_label = frac[:, None] * y.sum(axis=0)[None, :]  # (splits, classes)
    need_total = frac * len(y)
    # a label with enough images goes to every split at least once before shares count: on small
    # sets a 10 % split's share (< 1 image) would otherwise never win against the 70 % one
    lacks = (frac[:, None] > 0) & (y.sum(axis=0)[None, :] >= (frac > 0).sum())
    assigned = np.full(len(y), -1)
    order = rng.permutation(len(y))
    while (assigned < 0).any():
        left = order[assigned[order] < 0]
        counts = y[left].sum(axis=0)
        if counts.any():
            label = int(np.argmin(np.where(counts > 0, counts, np.inf)))
            batch = left[y[left, label]]
        else:  # images without any label: by total need only
            label, batch = -1, left
        for i in batch:
            score = need_label[:, label] if label >= 0 else need_total
            if label >= 0 and lacks[:, label].any():
                score = np.where(lacks[:, label], score + len(y), score)
            best = np.flatnonzero(score == score.max())
            if len(best) > 1:  # ties: the split that needs most images overall, then by chance
                best = best[need_total[best] == need_total[best].max()]
            split = int(rng.choice(best))
            assigned[i] = split
            need_label[split] -= y[i]
            need_total[split] -= 1
            lacks[split, y[i]] = False
    return {n: np.flatnonzero(assigned == k) for k, n in enumerate(names)}


def multilabel_fraction_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The fine-tuning subset at ``fraction``: ``max(#labels, round(fraction · n))`` images,
    chosen by a seeded generator so that every label is present at least once."""
    y = as_multi_hot(labels)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1], got {fraction}")
    absent = np.flatnonzero(y.sum(axis=0) == 0)
    if len(absent):
        raise ValueError(
            f"label(s) {absent.tolist()} occur in no training image; cannot fine-tune at "
            f"label_fraction={fraction:g}"
        )
    if fraction == 1.0:
        return np.arange(len(y), dtype=np.int64)
    rng = np.random.default_rng([seed, _FRACTION_SALT])
    order = rng.permutation(len(y))
    chosen: list[int] = []
    for label in np.argsort(y.sum(axis=0), kind="stable"):  # rarest label first
        if not y[chosen, label].any():
            chosen.append(int(order[y[order, label]][0]))
    target = max(len(chosen), int(np.floor(fraction * len(y) + 0.5)))
    taken = set(chosen)
    rest = [int(i) for i in order if int(i) not in taken]
    chosen += rest[: target - len(chosen)]
    return np.sort(np.asarray(chosen, dtype=np.int64))
