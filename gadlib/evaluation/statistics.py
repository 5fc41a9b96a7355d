"""Paired per-image tests with effect sizes (:func:`paired_test`, :func:`paired_rate_test`), the
Benjamini-Hochberg correction across a report (:func:`adjust`) and the verdicts (:func:`verdict`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

SUPPORTED = "supported"
NOT_SIGNIFICANT = "not significant"
CONTRADICTED = "contradicted"
DEGENERATE = "degenerate"
BY_CONSTRUCTION = "by construction"
VERDICTS = (SUPPORTED, NOT_SIGNIFICANT, CONTRADICTED, DEGENERATE, BY_CONSTRUCTION)


@dataclass(frozen=True)
class PairedTest:
    """``a`` against ``b`` over the ``n`` images where both are finite: ``median_diff`` of ``a - b``, its
    percentile-bootstrap ``ci95`` (low, high), the two-sided Wilcoxon signed-rank ``p`` (1.0 when every
    difference is 0, NaN when n = 0), and the ``share_positive`` (a > b) and ``share_negative`` of pairs."""

    n: int
    median_diff: float
    ci95: tuple[float, float]
    p: float
    share_positive: float
    share_negative: float

    @property
    def effect(self) -> float:
        """The signed effect a verdict reads (:func:`signed_effect`)."""
        return signed_effect(self.median_diff, self.share_positive, self.share_negative)

    def as_dict(self) -> dict:
        return {**asdict(self), "ci95": list(self.ci95)}


def signed_effect(median_diff: float, share_positive: float, share_negative: float) -> float:
    """The median difference, or when it is 0 (more than half the pairs tie) the balance of the
    pairs that do not tie: its sign is the direction a verdict reads."""
    if median_diff != 0 or not math.isfinite(median_diff):
        return median_diff
    return share_positive - share_negative


def paired_test(
    a, b, *, rng: np.random.Generator | int, n_resamples: int = 2000, confidence: float = 0.95
) -> PairedTest:
    """The :class:`PairedTest` of (N,) arrays ``a`` and ``b`` (or a scalar ``b``, e.g. 1 for "RC < 1"),
    pairs with a NaN left out; ``rng`` seeds ``n_resamples`` bootstrap resamples of the median difference."""
    a = np.asarray(a, dtype=np.float64)
    b = np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape)
    if a.ndim != 1:
        raise ValueError(f"a and b must be 1-D arrays of per-image values; got shape {a.shape}")
    both = np.isfinite(a) & np.isfinite(b)
    diffs = a[both] - b[both]
    n = int(diffs.size)
    if n == 0:
        return PairedTest(0, math.nan, (math.nan, math.nan), math.nan, math.nan, math.nan)
    median = float(np.median(diffs))
    ci = _bootstrap_ci(diffs, np.median, median, rng=rng, n_resamples=n_resamples, confidence=confidence)
    p = 1.0 if not np.any(diffs) else float(stats.wilcoxon(diffs, alternative="two-sided").pvalue)
    return PairedTest(n, median, ci, p, float(np.mean(diffs > 0)), float(np.mean(diffs < 0)))


@dataclass(frozen=True)
class RateTest:
    """Two yes/no outcomes (e.g. "the GAD map is empty") on the same ``n`` images: their rates, ``diff`` =
    ``rate_a - rate_b`` with its percentile-bootstrap ``ci95``, and the exact McNemar ``p`` (1.0 without
    discordant images)."""

    n: int
    rate_a: float
    rate_b: float
    diff: float
    ci95: tuple[float, float]
    p: float

    def as_dict(self) -> dict:
        return {**asdict(self), "ci95": list(self.ci95)}


def paired_rate_test(
    a, b, *, rng: np.random.Generator | int, n_resamples: int = 2000, confidence: float = 0.95
) -> RateTest:
    """The :class:`RateTest` of (N,) bool arrays ``a`` and ``b``; ``rng``, ``n_resamples``, ``confidence``
    as in :func:`paired_test`."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D bool arrays of the same length; got {a.shape} and {b.shape}")
    n = int(a.size)
    if n == 0:
        return RateTest(0, math.nan, math.nan, math.nan, (math.nan, math.nan), math.nan)
    diffs = a.astype(np.float64) - b.astype(np.float64)
    diff = float(diffs.mean())
    ci = _bootstrap_ci(diffs, np.mean, diff, rng=rng, n_resamples=n_resamples, confidence=confidence)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    p = 1.0 if only_a + only_b == 0 else float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return RateTest(n, float(a.mean()), float(b.mean()), diff, ci, p)


def _bootstrap_ci(
    values: np.ndarray, statistic, estimate: float, *, rng, n_resamples: int, confidence: float
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``statistic`` over ``values``; the estimate itself when there is
    nothing to resample (one value, or all equal)."""
    if values.size < 2 or np.ptp(values) == 0:
        return estimate, estimate
    percentile = {"method": "percentile", "random_state": np.random.default_rng(rng)}
    result = stats.bootstrap((values,), statistic, n_resamples=n_resamples, confidence_level=confidence, **percentile)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def adjust(p_values) -> np.ndarray:
    """(T,) float64 Benjamini-Hochberg adjusted p-values of a report's (T,) raw ones; NaN stays NaN, uncounted."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = stats.false_discovery_control(p[finite], method="bh")
    return out


def verdict(
    effect: float,
    n: int,
    p_adjusted: float,
    *,
    direction: int,
    alpha: float = 0.05,
    min_pairs: int = 10,
    by_construction: bool = False,
) -> str:
    """The verdict on one claim (:data:`VERDICTS`): the sign of ``effect`` (median or rate difference)
    against the expected ``direction`` (+1 or -1) when ``p_adjusted`` < ``alpha``; "degenerate" with
    fewer than ``min_pairs`` pairs ``n``; "by construction" when the claim holds for every input."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1; got {direction!r}")
    if by_construction:
        return BY_CONSTRUCTION
    if n < min_pairs or not math.isfinite(p_adjusted):
        return DEGENERATE
    if p_adjusted >= alpha or effect == 0 or not math.isfinite(effect):
        return NOT_SIGNIFICANT
    return SUPPORTED if math.copysign(1, effect) == direction else CONTRADICTED
