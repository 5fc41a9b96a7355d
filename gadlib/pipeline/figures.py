"""The report's figures, assembled from what the pipeline's stages saved.

Each figure function turns the saved outputs of one or all experiments into one figure of
:mod:`gadlib.plots`; :func:`save_report_figures` draws them all and writes them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from gadlib import plots as plotting
from gadlib.common.atomic import write_text
from gadlib.data.prepared import load_prepared
from gadlib.evaluation.sensitivity import occlude
from gadlib.evaluation.table import RegionSets, build_region_sets
from gadlib.pipeline import paths
from gadlib.pipeline.experiment import CONTROL, load_attributions
from gadlib.pipeline.params import Params, RegionParams
from gadlib.pipeline.paths import ExperimentPaths


def save_report_figures(
    params: Params, experiments: list[str], metrics: dict | None = None, folder: str | Path | None = None
) -> dict[str, str]:
    """Draw every figure of the report from the saved outputs and write each as a PNG.

    With ``metrics``: the claims' effects and verdicts, and the agreement of the maps against
    chance, first. Per experiment: the attribution grid (every method), then the hulls and the
    occlusion examples (the first method); across experiments: the RC distributions, the RS
    comparison and the support models' fidelity. Examples are the first ``figures.n_examples`` images.

    Parameters
    ----------
    params : the validated params.yaml
    experiments : names of the experiments to draw, as in params.yaml
    metrics : the judged metrics (:func:`gadlib.pipeline.report.collect_metrics`), or None
    folder : where the PNGs go; default ``reports/figures`` (under ``paths.REPORTS_DIR`` at call time).

    Returns
    -------
    dict figure title -> PNG path relative to ``reports/`` (as the report links it), in report order.
    """
    folder = Path(paths.REPORTS_DIR) / "figures" if folder is None else Path(folder)
    hull, fidelity = read_tables(experiments)
    methods, n_examples, sensitivity = params.attribution.methods, params.figures.n_examples, params.sensitivity
    first = methods[0]
    saved_paths = {}

    def save(title: str, file_stem: str, fig: Figure) -> None:
        path = folder / f"{file_stem}.png"
        plotting.save_figure(fig, path)
        saved_paths[title] = Path(os.path.relpath(path, paths.REPORTS_DIR)).as_posix()

    if metrics is not None:
        save("The claims: effects, 95% CIs and verdicts", "claims", plotting.plot_claims(claims_table(metrics)))
        save(
            "Agreement of the K + 1 maps against chance", "agreement", plotting.plot_agreement(agreement_table(metrics))
        )
    for name in experiments:
        saved = {method: load_attributions(name, method) for method in methods}
        fig = attribution_grid(saved, params.support.alpha_schedule, n_examples)
        save(f"Attribution maps, {name}", f"attribution_grid_{name}", fig)
        sets = example_region_sets(
            saved[first], params.regions, params.seed, n_examples, params.statistics.random_subset_draws
        )
        fig = hulls_figure(saved[first], sets, f"{name}, {first}: original hulls against GAD hulls")
        save(f"Hull regions, {name}", f"hulls_{name}", fig)
        mean = pixel_mean(name) if sensitivity.fill == "mean" else None  # the other fills need no prepared data
        fig = occlusion_figure(saved[first], sets, hull, name, first, sensitivity.fill, mean, sensitivity.blur_sigma)
        save(f"Occlusion examples, {name}", f"occlusion_{name}", fig)
    save("RC per method and experiment", "rc_distributions", plotting.plot_rc_distributions(hull))
    rs_sets = ("gad", "rest", "random", "top_n", "random_subset", "gad_alpha0")
    save(
        "RS: GAD regions against the rest, the controls and the baselines",
        "rs_comparison",
        plotting.plot_rs_comparison(hull, region_sets=rs_sets),
    )
    save("Support-model fidelity against α", "support_fidelity", plotting.plot_support_fidelity(fidelity))
    return saved_paths


# The columns of each file that dvc.yaml's plots read (reports/plots/)
PLOT_DATA_COLUMNS = {
    "rc.csv": ["experiment", "method", "image", "rc"],
    "rs.csv": ["experiment", "method", "image", "region_set", "rs"],
    "fidelity.csv": ["experiment", "support_set", "model", "alpha", "accuracy", "agreement", "margin"],
}


def write_plot_data(hull: pd.DataFrame, fidelity: pd.DataFrame, folder: str | Path | None = None) -> dict[str, str]:
    """Write the per-image tables that ``dvc plots show`` and ``dvc plots diff`` draw (dvc.yaml's plots).

    - ``rc.csv``: experiment, method, image, rc: GAD's hull area over the original's, per image;
    - ``rs.csv``: experiment, method, image, region_set, rs: RS of every region set (original, gad,
      rest, random and the baselines and control present), under the main fill;
    - ``fidelity.csv``: experiment, support_set, model, alpha, accuracy, agreement, margin: each
      support model of the distancing sets (the α = 0 control, all at α = 0, is left out).

    Parameters
    ----------
    hull, fidelity : the experiments' tables, concatenated (:func:`read_tables`)
    folder : where the files go; default ``reports/plots`` (``paths.PLOT_DATA_DIR`` at call time)

    Returns
    -------
    dict file name -> path of the written file.
    """
    folder = Path(paths.PLOT_DATA_DIR if folder is None else folder)
    tables = {
        "rc.csv": hull[hull["region_set"] == "gad"],
        "rs.csv": hull,
        "fidelity.csv": fidelity[fidelity["support_set"] != CONTROL],
    }
    written = {}
    for name, columns in PLOT_DATA_COLUMNS.items():
        path = folder / name
        write_text(path, tables[name][columns].to_csv(index=False))
        written[name] = str(path)
    return written


def read_tables(experiments: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-image hull-metrics table and the support-fidelity table of all experiments, concatenated."""
    hull = pd.concat([pd.read_csv(ExperimentPaths(e).hull_metrics) for e in experiments], ignore_index=True)
    fidelity = pd.concat([pd.read_csv(ExperimentPaths(e).fidelity) for e in experiments], ignore_index=True)
    return hull, fidelity


def model_labels(alphas: list[float]) -> list[str]:
    """Column labels of the attribution grid: the original, then each support model with its α."""
    return ["original"] + [f"support {s} (α={a:g})" for s, a in enumerate(alphas, 1)]


def attribution_grid(saved_by_method: dict[str, dict], alphas: list[float], n_examples: int) -> Figure:
    """Images × methods × {original, each support model, GAD} of the first ``n_examples`` images.

    Parameters
    ----------
    saved_by_method : method -> what the attribute stage saved (images (N, C, H, W), importance
        (M, N, H, W), gad_importance (N, H, W), ...)
    alphas : the α schedule of the M - 1 support models
    n_examples : how many images, from the first
    """
    images = next(iter(saved_by_method.values()))["images"][:n_examples]
    importance = {m: s["importance"][:, : len(images)] for m, s in saved_by_method.items()}
    gad = {m: s["gad_importance"][: len(images)] for m, s in saved_by_method.items()}
    return plotting.plot_attribution_grid(images, importance, gad, model_labels(alphas))


def example_region_sets(
    saved: dict, regions: RegionParams, seed: int, n_examples: int, random_subset_draws: int = 20
) -> RegionSets:
    """The region sets and hull polygons of the first ``n_examples`` images, built by the same
    function, with the same settings and random draws, as the hull-metrics stage."""
    control = saved.get("gad_alpha0_importance")
    return build_region_sets(
        saved["images"][:n_examples],
        saved["importance"][0, :n_examples],
        saved["gad_importance"][:n_examples],
        control_importance=None if control is None else control[:n_examples],
        **regions.model_dump(),
        random_subset_draws=random_subset_draws,
        rng=np.random.default_rng(seed),
        progress=False,
    )


def hulls_figure(saved: dict, region_sets: RegionSets, title: str) -> Figure:
    """Hull polygons over each example image, original against GAD: one panel per image, headed
    by its dataset index, under ``title``."""
    n = len(region_sets.polygons)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 4.4), squeeze=False, layout="constrained")
    for i, (original, gad) in enumerate(region_sets.polygons):
        plotting.plot_hulls(saved["images"][i], original, gad, ax=axes[0, i], title=f"image {int(saved['index'][i])}")
    fig.suptitle(title, wrap=True)  # one example image leaves a narrow figure
    return fig


def occlusion_figure(
    saved: dict,
    region_sets: RegionSets,
    hull_table: pd.DataFrame,
    experiment: str,
    method: str,
    fill: str,
    mean: list[float] | None,
    blur_sigma: float,
) -> Figure:
    """Occluded versions of the example images per region set, with the score drops the hull-metrics
    stage measured for ``experiment`` and ``method`` (NaN where the table has no row).

    Parameters
    ----------
    saved, region_sets : the method's saved outputs and its example region sets
    hull_table : the per-image hull-metrics table (columns experiment, image, method, region_set, score_drop, ...)
    fill, mean, blur_sigma : the occlusion's settings (``mean`` is needed for fill "mean" only)
    """
    images = saved["images"][: len(region_sets.polygons)]
    rows = hull_table[(hull_table["method"] == method) & (hull_table["experiment"] == experiment)]
    by_set = rows.pivot(index="image", columns="region_set", values="score_drop")
    by_set = by_set.reindex(index=saved["index"][: len(images)], columns=list(region_sets.masks))
    drops = {name: by_set[name].to_numpy(float) for name in region_sets.masks}
    # Occluding every pixel yields exactly what the fill puts in place of the occluded ones.
    everything = torch.ones(images.shape[0], *images.shape[2:], dtype=torch.bool)
    fill_images = occlude(torch.from_numpy(images), everything, fill=fill, mean=mean, blur_sigma=blur_sigma).numpy()
    return plotting.plot_occlusion_examples(images, region_sets.masks, drops, fill_images=fill_images)


def pixel_mean(name: str) -> list[float]:
    """Per-channel mean of the experiment's training images (the occlusion's "mean" fill)."""
    return load_prepared(ExperimentPaths(name).prepared).mean


def claims_table(metrics: dict) -> pd.DataFrame:
    """Every judged test of the metrics as rows: claim, label ("method, experiment"), median_diff,
    ci_low, ci_high, verdict, n (the controls' empty-map rate test is left out: it is not a median)."""
    rows = []
    for experiment, exp in metrics.items():
        for method, values in exp["methods"].items():
            tests = {
                **values["tests"],
                **{
                    f"rs_gad_vs_rest ({fill} fill)": t
                    for fill, t in values["rs_by_fill"].items()
                    if fill != exp["fills"][0]
                },
            }
            control = exp.get("controls", {}).get("alpha0", {}).get("methods", {}).get(method, {}).get("tests", {})
            tests |= {key: t for key, t in control.items() if "median_diff" in t}
            for claim, t in tests.items():
                low, high = t["ci95"] if t.get("ci95") else (np.nan, np.nan)
                rows.append(
                    {
                        "claim": claim,
                        "label": f"{method}, {experiment}",
                        "median_diff": t["median_diff"],
                        "ci_low": low,
                        "ci_high": high,
                        "verdict": t["verdict"],
                        "n": t["n"],
                    }
                )
    return pd.DataFrame(rows).astype({"median_diff": float, "ci_low": float, "ci_high": float})


def agreement_table(metrics: dict) -> pd.DataFrame:
    """The agreement distributions of the metrics as rows: label, maps (0..K+1), observed, independent."""
    rows = []
    for experiment, exp in metrics.items():
        for method, values in exp["methods"].items():
            shares = values["agreement"]
            rows += [
                {"label": f"{method}, {experiment}", "maps": k, "observed": o, "independent": i}
                for k, (o, i) in enumerate(zip(shares["observed"], shares["independent"], strict=True))
            ]
    return pd.DataFrame(rows)
