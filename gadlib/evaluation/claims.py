"""The paper's claims as paired tests on the per-image table, and what holds by construction.

Each claim compares one quantity of the GAD regions with a baseline or control on the same images
(:data:`CLAIMS`): the relative complexity RC (hull area over the original's) or the occlusion
sensitivity RS (score drop per occluded pixel). :func:`claim_tests` runs them for one method;
:func:`judge` corrects the p-values of a whole report together and gives each test its verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gadlib.evaluation import statistics


@dataclass(frozen=True)
class Claim:
    """One comparison: ``quantity`` of region set ``a`` against region set ``b`` (or a number).

    ``direction`` is +1 when the paper expects ``a > b``, -1 when it expects ``a < b``;
    ``nonempty`` restricts the test to images whose GAD map keeps at least one pixel (where an
    empty map would compare 0 with 0).
    """

    quantity: str
    a: str
    b: str | float
    direction: int
    sentence: str
    nonempty: bool = False


CLAIMS = {
    "rc_below_1": Claim("rc", "gad", 1.0, -1, "RC < 1 (GAD's regions cover less than the original's)"),
    "rs_gad_vs_rest": Claim("rs", "gad", "rest", 1, "RS(GAD regions) > RS(original regions − GAD regions)"),
    "rs_gad_vs_random": Claim(
        "rs", "gad", "random", 1, "RS(GAD regions) > RS(random regions of the same area on the object)"
    ),
    "rs_gad_vs_top_n": Claim("rs", "gad", "top_n", 1, "RS(GAD regions) > RS(the original's own top-n pixels)"),
    "rc_vs_top_n": Claim(
        "rc",
        "gad",
        "top_n",
        -1,
        "GAD is more compact than the original's own top-n pixels (same pixel count)",
        nonempty=True,
    ),
    "rc_vs_random_subset": Claim(
        "rc",
        "gad",
        "random_subset",
        -1,
        "GAD is more compact than n random pixels of the original's significant set",
        nonempty=True,
    ),
}
CONTROL_CLAIMS = {
    "rs_gad_vs_alpha0": Claim("rs", "gad", "gad_alpha0", 1, "RS(GAD regions) > RS(GAD regions without distancing)"),
    "complexity_gad_vs_alpha0": Claim(
        "rc", "gad", "gad_alpha0", -1, "GAD is more compact than GAD without distancing (α = 0)", nonempty=True
    ),
}


def rc_bounded_by_construction(
    *,
    fusion_mode: str,
    fusion_q: float,
    fusion_tau: float,
    min_agreement: int | None,
    n_maps: int,
    eval_mode: str,
    eval_q: float,
    eval_tau: float,
) -> bool:
    """Whether RC <= 1 holds for every input under these settings.

    It does when every GAD pixel is one of the original's significant pixels: the consistency mask
    requires the original's own map (every map must keep the pixel), and the evaluation keeps at
    least the pixels the fusion kept in the original's map (same importance, same kind of
    threshold, no stricter). Grouping, dilation and convex hulls are monotone, so the GAD hull
    union then lies inside the original's.

    Parameters
    ----------
    fusion_mode, fusion_q, fusion_tau : the fusion's binarisation (``attribution.*`` in params).
    min_agreement : maps that must keep a pixel (None = all); n_maps : K + 1.
    eval_mode, eval_q, eval_tau : the evaluation's binarisation (``regions.*`` in params).
    """
    every_map = min_agreement is None or min_agreement >= n_maps
    if not every_map or fusion_mode != eval_mode:
        return False
    return eval_q <= fusion_q if eval_mode == "quantile" else eval_tau <= fusion_tau


def wide(table: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """One method's per-image table as image x region set for one quantity (a column of the table)."""
    return table.pivot(index="image", columns="region_set", values=quantity)


def claim_tests(
    table: pd.DataFrame, claims: dict[str, Claim], *, rng: np.random.Generator, n_resamples: int = 2000
) -> dict[str, dict]:
    """Run each claim's paired test on one method's per-image table.

    Parameters
    ----------
    table : rows of one method (image x region set) with columns image, region_set, n_pixels and
        the claims' quantities (``rc``, ``rs``).
    claims : name -> :class:`Claim`; claims whose region sets the table lacks are left out.
    rng : bootstrap generator.

    Returns
    -------
    name -> {n, median_diff, ci95, p, share_positive, share_negative}; p-values are raw (see :func:`judge`).
    """
    present = set(table["region_set"])
    nonempty = wide(table, "n_pixels")["gad"].to_numpy() > 0 if "gad" in present else None
    out = {}
    for name, claim in claims.items():
        if claim.a not in present or (isinstance(claim.b, str) and claim.b not in present):
            continue
        values = wide(table, claim.quantity)
        a = values[claim.a].to_numpy(dtype=np.float64)
        b = values[claim.b].to_numpy(dtype=np.float64) if isinstance(claim.b, str) else np.full(a.shape, claim.b)
        if claim.nonempty:
            keep = nonempty.copy()
            if isinstance(claim.b, str) and claim.b.startswith("gad"):
                keep &= wide(table, "n_pixels")[claim.b].to_numpy() > 0
            a, b = a[keep], b[keep]
        out[name] = statistics.paired_test(a, b, rng=rng, n_resamples=n_resamples).as_dict()
    return out


def judge(
    tests: list[dict], directions: list[int], *, alpha: float, min_pairs: int, by_construction: list[bool] | None = None
) -> None:
    """Correct the p-values of every test of a report together and give each its verdict, in place.

    Parameters
    ----------
    tests : dicts from :func:`claim_tests` (or a rate test's ``as_dict``, with ``diff``); each gains
        ``p_adjusted`` (Benjamini-Hochberg over the tests that are neither degenerate nor by
        construction) and ``verdict``.
    directions : +1 / -1, the paper's direction of each test.
    alpha, min_pairs : see :func:`gadlib.evaluation.statistics.verdict`.
    by_construction : which tests hold for every input under the settings (no p-value needed).
    """
    by_construction = by_construction or [False] * len(tests)
    testable = [
        not bc and t["n"] >= min_pairs and math.isfinite(t["p"]) for t, bc in zip(tests, by_construction, strict=True)
    ]
    adjusted = statistics.adjust([t["p"] if ok else math.nan for t, ok in zip(tests, testable, strict=True)])
    for test, direction, bc, p_adj in zip(tests, directions, by_construction, adjusted, strict=True):
        effect = (
            test["diff"]
            if "diff" in test
            else statistics.signed_effect(test["median_diff"], test["share_positive"], test["share_negative"])
        )
        test["p_adjusted"] = None if not math.isfinite(p_adj) else float(p_adj)
        test["verdict"] = statistics.verdict(
            effect, test["n"], p_adj, direction=direction, alpha=alpha, min_pairs=min_pairs, by_construction=bc
        )


def method_claims(table: pd.DataFrame, *, fills: list[str], rng: np.random.Generator, n_resamples: int = 2000) -> dict:
    """Every raw test of one method: the claims, RS against the rest under each fill, the controls.

    Parameters
    ----------
    table : rows of one method from :func:`gadlib.evaluation.table.evaluate_maps` (with ``rs_<fill>``
        columns for ``fills``, and region set ``gad_alpha0`` for the controls).
    fills : the fills measured; the first is the one of the ``rs`` column.
    rng : bootstrap generator.

    Returns
    -------
    dict with ``tests`` (name -> test, :data:`CLAIMS`), ``rs_by_fill`` (fill -> the
    ``rs_gad_vs_rest`` test under that fill) and, when the table has the control, ``controls``
    (:data:`CONTROL_CLAIMS`, and ``empty_gad_vs_alpha0``: the rate of empty maps, paired).
    p-values are raw; :func:`judge` corrects and reads them.
    """
    out = {"tests": claim_tests(table, CLAIMS, rng=rng, n_resamples=n_resamples), "rs_by_fill": {}}
    for fill in fills:
        by_fill = table.assign(rs=table[f"rs_{fill}"])
        out["rs_by_fill"][fill] = claim_tests(
            by_fill, {"rs_gad_vs_rest": CLAIMS["rs_gad_vs_rest"]}, rng=rng, n_resamples=n_resamples
        )["rs_gad_vs_rest"]
    if "gad_alpha0" in set(table["region_set"]):
        pixels = wide(table, "n_pixels")
        out["controls"] = claim_tests(table, CONTROL_CLAIMS, rng=rng, n_resamples=n_resamples)
        out["controls"]["empty_gad_vs_alpha0"] = statistics.paired_rate_test(
            pixels["gad"].to_numpy() == 0, pixels["gad_alpha0"].to_numpy() == 0, rng=rng, n_resamples=n_resamples
        ).as_dict()
    return out
