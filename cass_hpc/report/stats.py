"""Uncertainty over replicates: the 95 % t-interval of a mean and the paired test of two methods.

A replicate is one (split_seed, seed) of a cell: the seed fixes the label subset and the
initialisation, the split seed (issue 14 item 7; null = the packed split) the data split. The
paper reports ``mean ± variance`` over five seeds (App. F.2.1) and no interval or test.

Interval: ``mean ± t_{0.975, n-1} · s / √n`` (s the sample std, ddof 1), none for n < 2. With
n = 2 the t quantile is 12.71, so the interval is wide (and may leave [0, 1]); that is what two
seeds say.

Paired test: two methods on the same replicate share the split and the labelled subset, so
their difference per replicate is what varies; we test those differences. The test shown is the
two-sided paired t-test (``scipy.stats.ttest_rel``, df = n − 1): with the 2–5 seeds of our grids
an exact two-sided Wilcoxon signed-rank test cannot reach p < 0.05 at all (its smallest p is
2 / 2^n: 0.5, 0.25, 0.125, 0.0625 for n = 2..5), so it could never say anything. The exact
Wilcoxon p is still computed (for n ≥ 2) and written to the CSV as a check that leans on no
normality assumption.

Example:
    >>> t_interval([0.8, 0.9])          # (0.2147..., 1.4853...)
    >>> paired_test([0.85, 0.87, 0.9], [0.80, 0.84, 0.86]).p_t
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
_EQUAL = 1e-12  # differences closer than this (relative) are equal: float noise, not variance


def t_quantile(n: int | float, confidence: float = CONFIDENCE) -> float:
    """The two-sided t quantile for ``n`` replicates (df = n − 1); NaN for n < 2."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if not n >= 2:  # also NaN
        return math.nan
    return float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1))


def half_width(std: float, n: int | float, confidence: float = CONFIDENCE) -> float:
    """Half the width of the t-interval of a mean from its sample std (ddof 1) and count."""
    if not n >= 2 or std is None or not math.isfinite(std):
        return math.nan
    return t_quantile(n, confidence) * float(std) / math.sqrt(n)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The t-interval of the mean of ``values`` (NaNs dropped); (NaN, NaN) for fewer than 2."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(data) < 2:
        return math.nan, math.nan
    mean, width = float(data.mean()), half_width(float(data.std(ddof=1)), len(data), confidence)
    return mean - width, mean + width


@dataclass(frozen=True)
class PairedTest:
    """The paired comparison of ``a`` with ``b`` over ``n`` replicates: mean difference a − b,
    its t-interval, the paired t statistic and two-sided p (df = n − 1), the exact Wilcoxon p.
    Every number NaN where undefined (n < 2; t and p also when all differences are equal)."""

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    t: float
    df: int
    p_t: float
    p_wilcoxon: float


def _wilcoxon_p(diff: np.ndarray) -> float:
    """Exact two-sided Wilcoxon signed-rank p; NaN when every difference is 0."""
    diff = np.round(diff, 12)  # float noise must neither break a tie nor make a zero non-zero
    if len(diff) < 2 or not np.any(diff != 0):
        return math.nan
    with warnings.catch_warnings():  # scipy warns that exact p with zeros/ties is approximate
        warnings.simplefilter("ignore")
        try:
            return float(scipy_stats.wilcoxon(diff, method="exact").pvalue)
        except ValueError:
            return math.nan


def paired_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Compare ``a[i]`` with ``b[i]`` (the same replicate i); raises ValueError on unequal
    lengths. A pair with a NaN on either side is left out."""
    if len(a) != len(b):
        raise ValueError(f"paired samples must have equal length, got {len(a)} and {len(b)}")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    diff, n = x - y, int(keep.sum())
    mean_diff = float(diff.mean()) if n else math.nan
    low, high = t_interval(list(diff))
    t = p = math.nan
    # equal differences (to float noise: 0.80 − 0.70 vs 0.84 − 0.74): no variance, t undefined
    if n >= 2 and np.ptp(diff) > _EQUAL * max(1.0, float(np.abs(diff).max())):
        result = scipy_stats.ttest_rel(x, y)
        t, p = float(result.statistic), float(result.pvalue)
    return PairedTest(
        n=n, mean_diff=mean_diff, ci_low=low, ci_high=high, t=t, df=max(n - 1, 0), p_t=p,
        p_wilcoxon=_wilcoxon_p(diff),
    )  # fmt: skip
