"""Claims on per-image tables built so that each verdict is known."""

import numpy as np
import pandas as pd
import pytest

from gadlib.evaluation.claims import CLAIMS, CONTROL_CLAIMS, claim_tests, judge, rc_bounded_by_construction

RNG = np.random.default_rng(0)
N = 40


def table(**columns_by_set) -> pd.DataFrame:
    """Rows image x region set; ``columns_by_set[name] = {"rc": (N,), "rs": (N,), "n_pixels": (N,)}``."""
    frames = []
    for name, columns in columns_by_set.items():
        frame = pd.DataFrame({"image": np.arange(N), "region_set": name})
        for column, values in columns.items():
            frame[column] = values
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def base_sets(gad_rs, rest_rs, gad_rc=None, top_rc=None, gad_pixels=None):
    gad_rc = RNG.uniform(0.2, 0.5, N) if gad_rc is None else gad_rc
    top_rc = RNG.uniform(0.2, 0.5, N) if top_rc is None else top_rc
    pixels = np.full(N, 10) if gad_pixels is None else gad_pixels
    return table(
        gad={"rc": gad_rc, "rs": gad_rs, "n_pixels": pixels},
        rest={"rc": np.nan, "rs": rest_rs, "n_pixels": 50},
        top_n={"rc": top_rc, "rs": RNG.normal(size=N), "n_pixels": pixels},
    )


def verdicts(frame, by_construction=None):
    tests = claim_tests(frame, CLAIMS, rng=np.random.default_rng(1))
    names = list(tests)
    bc = [by_construction == name for name in names]
    judge([tests[n] for n in names], [CLAIMS[n].direction for n in names], alpha=0.05, min_pairs=10, by_construction=bc)
    return {name: tests[name]["verdict"] for name in names}, tests


def test_clear_effect_no_effect_and_opposite_effect():
    rest = RNG.normal(size=N)
    assert verdicts(base_sets(rest + 1 + 0.1 * RNG.normal(size=N), rest))[0]["rs_gad_vs_rest"] == "supported"
    assert verdicts(base_sets(RNG.normal(size=N), rest))[0]["rs_gad_vs_rest"] == "not significant"
    assert verdicts(base_sets(rest - 1, rest))[0]["rs_gad_vs_rest"] == "contradicted"


def test_compactness_against_the_baseline_uses_non_empty_maps_only():
    top = RNG.uniform(0.3, 0.5, N)
    gad_rc = top - 0.1
    gad_rc[:35] = 0.0  # 35 empty GAD maps: only 5 images remain
    pixels = np.where(gad_rc > 0, 10, 0)
    result, tests = verdicts(base_sets(RNG.normal(size=N), RNG.normal(size=N), gad_rc, top, pixels))
    assert tests["rc_vs_top_n"]["n"] == 5 and result["rc_vs_top_n"] == "degenerate"
    assert verdicts(base_sets(RNG.normal(size=N), RNG.normal(size=N), top - 0.1, top))[0]["rc_vs_top_n"] == "supported"


def test_rc_below_one_by_construction():
    result, tests = verdicts(base_sets(RNG.normal(size=N), RNG.normal(size=N)), by_construction="rc_below_1")
    assert result["rc_below_1"] == "by construction" and tests["rc_below_1"]["p_adjusted"] is None


def test_claims_of_absent_region_sets_are_left_out():
    tests = claim_tests(
        base_sets(RNG.normal(size=N), RNG.normal(size=N)), {**CLAIMS, **CONTROL_CLAIMS}, rng=np.random.default_rng(0)
    )
    assert "rs_gad_vs_random" not in tests and "rs_gad_vs_alpha0" not in tests and "rs_gad_vs_top_n" in tests


def test_the_correction_counts_every_testable_test():
    tests = [
        {"n": 40, "median_diff": 1.0, "share_positive": 1, "share_negative": 0, "p": p}
        for p in (0.01, 0.02, 0.03, 0.04)
    ]
    tests.append({"n": 3, "median_diff": 1.0, "share_positive": 1, "share_negative": 0, "p": 0.001})
    judge(tests, [1] * 5, alpha=0.05, min_pairs=10)
    assert [t["p_adjusted"] for t in tests[:4]] == pytest.approx([0.04] * 4)
    assert tests[4]["verdict"] == "degenerate" and tests[4]["p_adjusted"] is None


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({}, True),
        ({"min_agreement": 4}, False),
        ({"min_agreement": 6}, True),
        ({"eval_q": 0.95}, False),  # the evaluation keeps fewer pixels than the fusion did
        ({"eval_q": 0.8}, True),
        ({"eval_mode": "fraction_of_max"}, False),
        ({"fusion_mode": "fraction_of_max", "eval_mode": "fraction_of_max", "eval_tau": 0.6}, False),
    ],
)
def test_rc_bound_is_detected_from_the_settings(settings, expected):
    base = dict(
        fusion_mode="quantile",
        fusion_q=0.9,
        fusion_tau=0.5,
        min_agreement=None,
        n_maps=6,
        eval_mode="quantile",
        eval_q=0.9,
        eval_tau=0.5,
    )
    assert rc_bounded_by_construction(**{**base, **settings}) is expected
