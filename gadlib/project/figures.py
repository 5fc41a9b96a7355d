"""The figures notebooks/06_figures.ipynb and notebooks/explore.ipynb both draw from the saved maps:
every model's maps, the hulls, and the occluded region sets with the drops step 5 measured."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from gadlib import plots
from gadlib.evaluation.sensitivity import occlude
from gadlib.evaluation.table import RegionSets


def model_labels(alphas: list[float]) -> list[str]:
    """Column labels of the attribution grid: the original, then each support model with its α."""
    return ["original"] + [f"support {s} (α={a:g})" for s, a in enumerate(alphas, 1)]


def attribution_grid(saved_by_method: dict[str, dict], alphas: list[float], n_examples: int) -> Figure:
    """Images × methods × {original, each support model, GAD} of the first ``n_examples`` images.

    Parameters
    ----------
    saved_by_method : method -> what notebooks/04_attribute saved (images (N, C, H, W), importance
        (M, N, H, W), gad_importance (N, H, W), ...)
    alphas : the α schedule of the M - 1 support models
    """
    images = next(iter(saved_by_method.values()))["images"][:n_examples]
    importance = {m: s["importance"][:, : len(images)] for m, s in saved_by_method.items()}
    gad = {m: s["gad_importance"][: len(images)] for m, s in saved_by_method.items()}
    return plots.plot_attribution_grid(images, importance, gad, model_labels(alphas))


def hulls_figure(saved: dict, region_sets: RegionSets, title: str) -> Figure:
    """Hull polygons over each example image, original against GAD: one panel per image, headed by
    its dataset index, under ``title``."""
    n = len(region_sets.polygons)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 4.4), squeeze=False, layout="constrained")
    for i, (original, gad) in enumerate(region_sets.polygons):
        plots.plot_hulls(saved["images"][i], original, gad, ax=axes[0, i], title=f"image {int(saved['index'][i])}")
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
    """Occluded versions of the example images per region set, titled by the score drops step 5
    measured for ``experiment`` and ``method`` (NaN where the table has no row).

    Parameters
    ----------
    saved, region_sets : the method's saved maps and its example region sets
    hull_table : the per-image table (columns experiment, image, method, region_set, score_drop, ...)
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
    return plots.plot_occlusion_examples(images, region_sets.masks, drops, fill_images=fill_images)


def one_image(saved: dict, region_sets: RegionSets, position: int) -> tuple[dict, RegionSets]:
    """The saved arrays and region sets of the image at ``position`` alone (first axis of length 1)."""
    keep = slice(position, position + 1)
    one = {key: value[:, keep] if key in ("importance", "masks") else value[keep] for key, value in saved.items()}
    fields = ("n_pixels", "n_regions", "complexity", "hull_area")
    sets = RegionSets(
        masks={name: mask[keep] for name, mask in region_sets.masks.items()},
        subset_draws=region_sets.subset_draws[:, keep],
        polygons=region_sets.polygons[keep],
        **{field: {name: np.asarray(v)[keep] for name, v in getattr(region_sets, field).items()} for field in fields},
    )
    return one, sets
