"""Paired tests and verdicts on small cases whose answer is known."""

import math

import numpy as np
import pytest

from gadlib.evaluation.statistics import (
    BY_CONSTRUCTION,
    CONTRADICTED,
    DEGENERATE,
    NOT_SIGNIFICANT,
    SUPPORTED,
    adjust,
    paired_rate_test,
    paired_test,
    verdict,
)

RNG = np.random.default_rng(0)


def judged(a, b, direction, **kwargs):
    test = paired_test(a, b, rng=1)
    return test, verdict(test.effect, test.n, test.p, direction=direction, **kwargs)


def test_a_clear_effect_in_the_claimed_direction_is_supported():
    base = RNG.normal(size=40)
    test, v = judged(base + 1.0 + 0.1 * RNG.normal(size=40), base, direction=1)
    assert v == SUPPORTED and test.n == 40 and test.p < 1e-6
    assert 0.9 < test.median_diff < 1.1 and test.ci95[0] < test.median_diff < test.ci95[1]
    assert test.share_positive == 1.0


def test_the_same_effect_against_the_claim_is_contradicted():
    base = RNG.normal(size=40)
    assert judged(base - 1.0, base, direction=1)[1] == CONTRADICTED
    assert judged(base - 1.0, base, direction=-1)[1] == SUPPORTED


def test_no_effect_is_not_significant():
    a, b = RNG.normal(size=60), RNG.normal(size=60)
    test, v = judged(a, b, direction=1)
    assert v == NOT_SIGNIFICANT and test.p > 0.05


def test_six_of_ten_is_a_coin_toss():
    # the old report called this "supported" (share > 0.5)
    diffs = np.array([0.3, 0.2, 0.1, 0.4, 0.25, 0.15, -0.3, -0.2, -0.35, -0.1])
    test, v = judged(diffs, 0.0, direction=1)
    assert test.share_positive == 0.6 and v == NOT_SIGNIFICANT


def test_too_few_pairs_is_degenerate_and_nan_pairs_do_not_count():
    a = np.array([2.0, 3.0, np.nan, 4.0, np.nan])
    b = np.array([1.0, 1.0, 1.0, np.nan, 1.0])
    test, v = judged(a, b, direction=1, min_pairs=3)
    assert test.n == 2 and v == DEGENERATE
    assert paired_test(np.array([np.nan]), np.array([1.0]), rng=0).n == 0


def test_by_construction_wins_over_the_numbers():
    base = RNG.normal(size=40)
    assert judged(base - 1, base, direction=-1, by_construction=True)[1] == BY_CONSTRUCTION


def test_ties_leave_the_direction_to_the_pairs_that_differ():
    diffs = np.r_[np.zeros(30), np.full(20, 0.5)]
    test = paired_test(diffs, 0.0, rng=0)
    assert test.median_diff == 0 and test.effect == pytest.approx(0.4)
    assert verdict(test.effect, test.n, test.p, direction=1) == SUPPORTED
    assert paired_test(np.zeros(12), 0.0, rng=0).p == 1.0


def test_benjamini_hochberg_by_hand_and_nan_left_out():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.2])
    # sorted 0.01, 0.03, 0.04, 0.2 with m = 4: 0.04, 0.0533, 0.0533, 0.2
    assert np.allclose(adjust(p), [0.04, 4 * 0.04 / 3, np.nan, 4 * 0.04 / 3, 0.2], equal_nan=True)


def test_the_bootstrap_is_seeded():
    a, b = RNG.normal(size=30), RNG.normal(size=30)
    assert paired_test(a, b, rng=5) == paired_test(a, b, rng=5)


def test_rate_test_counts_discordant_images():
    a = np.array([True] * 12 + [False] * 8)
    b = np.array([False] * 12 + [False] * 8)
    test = paired_rate_test(a, b, rng=0)
    assert (test.n, test.rate_a, test.rate_b, test.diff) == (20, 0.6, 0.0, 0.6)
    assert test.p == pytest.approx(2 * 0.5**12)
    assert paired_rate_test(b, b, rng=0).p == 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        paired_test(np.zeros((2, 2)), 0.0, rng=0)
    with pytest.raises(ValueError, match="direction"):
        verdict(1.0, 20, 0.01, direction=0)
    assert math.isnan(paired_test(np.array([]), np.array([]), rng=0).median_diff)
