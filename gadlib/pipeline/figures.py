"""The report's figures, assembled from what the pipeline's stages saved.

Each function loads the saved outputs of one or all experiments and calls one plot helper of
:mod:`gadlib.plots`; it returns the figure (the figures stage saves it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from gadlib import plots as plotting
from gadlib.data.prepared import load_prepared
from gadlib.evaluation.sensitivity import occlude
from gadlib.evaluation.table import RegionSets, build_region_sets
from gadlib.pipeline.params import RegionParams
from gadlib.pipeline.paths import ExperimentPaths


def read_tables(experiments: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-image hull-metrics table and the support-fidelity table of all experiments."""
    hull = pd.concat([pd.read_csv(ExperimentPaths(e).hull_metrics) for e in experiments], ignore_index=True)
    fidelity = pd.concat([pd.read_csv(ExperimentPaths(e).fidelity) for e in experiments], ignore_index=True)
    return hull, fidelity


def model_labels(alphas: list[float]) -> list[str]:
    """Column labels of the attribution grid: the original, then each support model with its α."""
    return ["original"] + [f"support {s} (α={a:g})" for s, a in enumerate(alphas, 1)]


def attribution_grid(saved_by_method: dict[str, dict], alphas: list[float], n_examples: int) -> Figure:
    """Images × methods × {original, each support model, GAD}, one colour scale per method."""
    first = next(iter(saved_by_method.values()))
    n = min(n_examples, len(first["images"]))
    importance = {m: s["importance"][:, :n] for m, s in saved_by_method.items()}
    gad = {m: s["gad_importance"][:n] for m, s in saved_by_method.items()}
    return plotting.plot_attribution_grid(first["images"][:n], importance, gad, model_labels(alphas))


def example_region_sets(saved: dict, regions: RegionParams, seed: int, n_examples: int):
    """Region sets (original, gad, rest, random) and hull polygons of the first images, built by the
    same function the hull-metrics stage uses."""
    n = min(n_examples, len(saved["images"]))
    return build_region_sets(
        saved["importance"][0, :n], saved["gad_importance"][:n], threshold_mode=regions.threshold_mode,
        q=regions.q, tau=regions.tau, dilation=regions.dilation, min_pixels=regions.min_pixels,
        rng=np.random.default_rng(seed), progress=False)


def hulls_figure(saved: dict, region_sets: RegionSets, title: str) -> Figure:
    """Hull polygons over each example image: original against GAD, side by side."""
    n = len(region_sets.polygons)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.9), squeeze=False)
    for i, (orig_poly, gad_poly) in enumerate(region_sets.polygons):
        title = f"image {int(saved['index'][i])}"
        plotting.plot_hulls(saved["images"][i], orig_poly, gad_poly, ax=axes[0, i], title=title)
    fig.suptitle(title)
    return fig


def occlusion_figure(saved: dict, region_sets: RegionSets, hull_table: pd.DataFrame, experiment: str, method: str,
                     fill: str, mean: list[float], blur_sigma: float) -> Figure:
    """Occluded versions of the example images per region set, with the score drops measured."""
    n = len(region_sets.polygons)
    images = torch.from_numpy(saved["images"][:n])
    drops = {}
    rows = hull_table[(hull_table["method"] == method) & (hull_table["experiment"] == experiment)]
    for name in region_sets.masks:
        by_image = rows[rows["region_set"] == name].set_index("image")["drop"]
        drops[name] = np.array([by_image.get(int(i), np.nan) for i in saved["index"][:n]])
    # Occluding every pixel yields exactly what the fill puts in place of the occluded ones.
    everything = torch.ones(images.shape[0], *images.shape[2:], dtype=torch.bool)
    fill_images = occlude(images, everything, fill=fill, mean=mean, blur_sigma=blur_sigma).numpy()
    return plotting.plot_occlusion_examples(saved["images"][:n], region_sets.masks, drops,
                                            fill_images=fill_images)


def pixel_mean(name: str) -> list[float]:
    """Per-channel mean of the experiment's training images (the occlusion's "mean" fill)."""
    return load_prepared(ExperimentPaths(name).prepared).mean
