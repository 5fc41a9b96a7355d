"""Stage ``hull_metrics``: hull complexity, RC and occlusion sensitivity RS per image and method, and
the raw paired tests of the paper's claims (the figures stage corrects them across the report)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from gadlib.common.atomic import write_json, write_text
from gadlib.data.prepared import load_prepared
from gadlib.evaluation.agreement import agreement_distribution
from gadlib.evaluation.claims import method_claims, rc_bounded_by_construction
from gadlib.evaluation.standard_metrics import TABLE_COLUMNS as STANDARD_COLUMNS
from gadlib.evaluation.standard_metrics import standard_metrics, summarize_standard_metrics
from gadlib.evaluation.table import CONTROL_SET, evaluate_maps, summarize
from gadlib.pipeline.attribute import gad_for, load_supports, method_kwargs
from gadlib.pipeline.experiment import load_attributions, load_classifier, trained_sets
from gadlib.pipeline.params import Params
from gadlib.pipeline.paths import ExperimentPaths

CONTROL_SUMMARY = ("n_images", "rc_median", "rc_median_nonempty", "gad_empty", "rs_gad_mean", "rs_gad_median")


def run(params: Params, name: str, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Evaluate every method's original and GAD maps; save the per-image table and its summary.

    The summary (``summary.json``) holds, per method, :func:`gadlib.evaluation.table.summarize`'s
    numbers, the agreement of the K + 1 binarised maps against chance, and the raw tests of
    :func:`gadlib.evaluation.claims.method_claims`; with the distancing control, the same for GAD(α = 0).
    """
    paths = ExperimentPaths(name)
    prepared = load_prepared(paths.prepared)
    original = load_classifier(params, name, prepared)
    regions, sens, stats, fusion = params.regions, params.sensitivity, params.statistics, params.attribution
    tables, agreement = [], {}
    for method in params.attribution.methods:
        saved = load_attributions(name, method)
        other = 1 - saved["targets"] if sens.score == "margin" and len(prepared.class_names) == 2 else None
        table = evaluate_maps(
            original,
            torch.from_numpy(saved["images"]),
            torch.from_numpy(saved["targets"]),
            saved["importance"][0],
            saved["gad_importance"],
            method=method,
            control_importance=saved.get("gad_alpha0_importance"),
            threshold_mode=regions.threshold_mode,
            q=regions.q,
            tau=regions.tau,
            dilation=regions.dilation,
            min_pixels=regions.min_pixels,
            fill=sens.fill,
            other_fills=tuple(sens.other_fills),
            mean=prepared.mean,
            blur_sigma=sens.blur_sigma,
            score_mode=sens.score,
            other=other,
            random_subset_draws=stats.random_subset_draws,
            rng=np.random.default_rng(params.seed),
            progress=progress,
            image_ids=saved["index"],
        )
        tables.append(table)
        agreement[method] = agreement_distribution(saved["masks"])
    table = pd.concat(tables, ignore_index=True)
    table.insert(0, "experiment", name)
    summary = {
        "fills": sens.fills,
        "rc_bounded_by_construction": rc_bounded_by_construction(
            fusion_mode=fusion.threshold_mode,
            fusion_q=fusion.q,
            fusion_tau=fusion.tau,
            min_agreement=fusion.min_agreement,
            n_maps=len(params.support.alphas) + 1,
            eval_mode=regions.threshold_mode,
            eval_q=regions.q,
            eval_tau=regions.tau,
        ),
        "methods": summarize(table[table["region_set"] != CONTROL_SET]),
        "controls": {},
    }
    for method, rows in table.groupby("method", sort=False):
        claims = method_claims(
            rows, fills=sens.fills, rng=np.random.default_rng(params.seed), n_resamples=stats.bootstrap_resamples
        )
        summary["methods"][method] |= {
            "agreement": agreement[method],
            "tests": claims["tests"],
            "rs_by_fill": {fill: test for fill, test in claims["rs_by_fill"].items() if fill != sens.fill},
        }
        if "controls" in claims:
            control = rows[rows["region_set"].isin(["original", CONTROL_SET])].replace(
                {"region_set": {CONTROL_SET: "gad"}}
            )
            numbers = summarize(control)[method]
            summary["controls"].setdefault("alpha0", {"methods": {}})["methods"][method] = {
                **{key: numbers[key] for key in CONTROL_SUMMARY},
                "tests": claims["controls"],
            }
    standard = pd.DataFrame(columns=list(STANDARD_COLUMNS))
    if params.standard_metrics.n_images > 0:
        standard = standard_metrics_table(params, name, original, prepared)
        summary["quantus"] = summarize_standard_metrics(standard)
    write_text(paths.standard_metrics, standard.to_csv(index=False))
    write_text(paths.hull_metrics, table.to_csv(index=False))
    write_json(paths.summary, summary)
    return table, summary


def standard_metrics_table(params: Params, name: str, original, prepared) -> pd.DataFrame:
    """Quantus's metrics of the original and the GAD maps of every method, on the first
    ``standard_metrics.n_images`` images the attribute stage explained with the first support set."""
    spec = trained_sets(params, name, prepared.class_names)[0]
    supports = load_supports(params, name, original, spec)
    tables = []
    for method in params.attribution.methods:
        saved = load_attributions(name, method)
        first = np.flatnonzero(saved["support_set"] == 0)[: params.standard_metrics.n_images]
        gad = gad_for(method, original, supports, params.attribution)
        tables.append(
            standard_metrics(
                gad,
                saved["images"][first],
                saved["targets"][first],
                image_ids=saved["index"][first],
                seed=params.seed,
                **method_kwargs(method, params.attribution),
            )
        )
    return pd.concat(tables, ignore_index=True)


def expected_conditions(table: pd.DataFrame) -> pd.DataFrame:
    """Per method, how often GAD keeps no pixel and RS is undefined (an empty region set): GAD's
    documented behaviour, shown as counts rather than as warnings."""
    rows = table[table["region_set"] != CONTROL_SET]
    counts = rows.assign(empty=rows["n_pixels"].eq(0) & rows["region_set"].eq("gad"), undefined=rows["rs"].isna())
    out = counts.groupby("method", sort=False).agg(
        images=("image", "nunique"), empty_gad_maps=("empty", "sum"), rs_undefined=("undefined", "sum")
    )
    return out


def expected_condition_lines(table: pd.DataFrame) -> list[str]:
    """One line of information per method: :func:`expected_conditions` in words, for the stage's
    notebook (printed, so a reader sees counts where a warning would look like a fault).

    Parameters
    ----------
    table : the per-image table of :func:`run` (columns method, image, region_set, n_pixels, rs)

    Returns
    -------
    list of str, one per method in table order, e.g. ``"Saliency: GAD map empty on 30 of 40 images;
    RS undefined for 90 of 200 region sets (an empty set has no RS)"``.
    """
    rows = table[table["region_set"] != CONTROL_SET]
    sets_per_method = rows.groupby("method", sort=False).size()
    return [
        f"{method}: GAD map empty on {counts.empty_gad_maps} of {counts.images} images; RS undefined for "
        f"{counts.rs_undefined} of {sets_per_method[method]} region sets (an empty set has no RS)"
        for method, counts in expected_conditions(table).iterrows()
    ]
