"""The paper's claims (:data:`CLAIMS`: RC or RS of the GAD regions against a baseline or control) as
paired tests on the per-image table (docs/method.md): :func:`claim_tests` runs them for one method,
:func:`judge` corrects a whole report's p-values together and gives each test its verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gadlib.evaluation import statistics


@dataclass(frozen=True)
class Claim:
    """``quantity`` of region set ``a`` against region set ``b`` (or a number), expected ``a > b`` for
    ``direction`` +1, ``a < b`` for -1; ``nonempty``: only images whose GAD map keeps a pixel."""

    quantity: str
    a: str
    b: str | float
    direction: int
    sentence: str
    nonempty: bool = False


def _more_sensitive(b: str, regions: str) -> Claim:
    return Claim("rs", "gad", b, 1, f"RS(GAD regions) > RS({regions})")


def _more_compact(b: str, than: str) -> Claim:  # on images whose GAD map keeps a pixel (an empty one has RC 0)
    return Claim("rc", "gad", b, -1, f"GAD is more compact than {than}", nonempty=True)


CLAIMS = {
    "rc_below_1": Claim("rc", "gad", 1.0, -1, "RC < 1 (GAD's regions cover less than the original's)"),
    "rs_gad_vs_rest": _more_sensitive("rest", "original regions − GAD regions"),
    "rs_gad_vs_random": _more_sensitive("random", "random regions of the same area on the object"),
    "rs_gad_vs_top_n": _more_sensitive("top_n", "the original's own top-n pixels"),
    "rc_vs_top_n": _more_compact("top_n", "the original's own top-n pixels (same pixel count)"),
    "rc_vs_random_subset": _more_compact("random_subset", "n random pixels of the original's significant set"),
}
CONTROL_CLAIMS = {
    "rs_gad_vs_alpha0": _more_sensitive("gad_alpha0", "GAD regions without distancing"),
    "complexity_gad_vs_alpha0": _more_compact("gad_alpha0", "GAD without distancing (α = 0)"),
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
    """Whether RC <= 1 holds for every input (docs/method.md, "What holds by construction"): every map
    must keep a pixel (``min_agreement`` None or ``n_maps`` = K + 1), and the evaluation's binarisation
    (``eval_*``, ``regions.*`` in params) is the fusion's (``fusion_*``, ``attribution.*``) or looser."""
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
    """Each claim's paired test (:func:`gadlib.evaluation.statistics.paired_test`, raw p) on one method's
    rows (image x region set; columns image, region_set, n_pixels and the claims' quantities): name ->
    its ``as_dict``, for the ``claims`` (name -> :class:`Claim`) whose region sets the table has."""
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
    """Give every test of a report (dicts of :func:`claim_tests`, or rate tests with ``diff``) its
    ``p_adjusted`` (Benjamini-Hochberg over the tests neither degenerate nor ``by_construction``) and
    ``verdict`` (:func:`gadlib.evaluation.statistics.verdict` in the paper's ``directions``), in place."""
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
    """Every raw test of one method's :func:`gadlib.evaluation.table.evaluate_maps` rows: ``tests``
    (:data:`CLAIMS`), ``rs_by_fill`` (fill -> ``rs_gad_vs_rest`` on its ``rs_<fill>`` column, for ``fills``)
    and, with region set ``gad_alpha0``, ``controls`` (:data:`CONTROL_CLAIMS` and the paired rate of
    empty maps, ``empty_gad_vs_alpha0``); ``rng`` draws the bootstrap."""
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
