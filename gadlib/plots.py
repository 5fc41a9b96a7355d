"""Figures of the GAD study: attribution grids, hulls, occlusion examples and metric summaries.

Every plot helper takes plain arrays or pandas DataFrames, draws on the ``ax`` / ``axes`` it is
given (or on a new figure), and returns the matplotlib Figure. None of them writes a file: only
:func:`save_figure` does, and only the figures stage calls it. Inputs are never modified.

Figures normalise for display only (the saved maps and metrics stay raw). Colours are Okabe-Ito,
distinguishable under the common colour-vision deficiencies; each region set and each panel role
keeps one colour across all figures.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.patches import Polygon as PolygonPatch
from shapely.geometry import MultiPolygon
from shapely.geometry import Polygon as ShapelyPolygon

from gadlib.common.atomic import atomic_path

__all__ = [
    "OKABE_ITO",
    "REGION_SET_COLORS",
    "plot_attribution_grid",
    "plot_hulls",
    "plot_occlusion_examples",
    "plot_rc_distributions",
    "plot_rs_comparison",
    "plot_support_fidelity",
    "plot_alpha_sweep",
    "plot_gad_vs_smoothgrad",
    "save_figure",
]

# Okabe & Ito (2008): safe for deuteranopia, protanopia and tritanopia.
OKABE_ITO = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#F0E442",  # yellow
    "#000000",  # black
)
REGION_SET_COLORS = {
    "original": "#E69F00",
    "gad": "#0072B2",
    "rest": "#D55E00",
    "random": "#999999",
}
IMPORTANCE_CMAP = "viridis"  # perceptually uniform, colour-blind safe, readable in greyscale
PNG_DPI = 150
_JITTER_SEED = 0  # strip-plot jitter is display only; a fixed seed keeps figures reproducible
_PIXEL_RANGE_TOLERANCE = 1e-3

TIDY_COLUMNS = ("experiment", "image", "method", "region_set")
FIDELITY_COLUMNS = (
    "experiment",
    "model",
    "alpha",
    "accuracy",
    "agreement",
    "margin",
    "target_margin",
    "final_loss",
)
SWEEP_COLUMNS = ("scale", "method", "rc", "rs_gad", "rs_rest", "agreement")


# --------------------------------------------------------------------------------------------
# attribution maps
# --------------------------------------------------------------------------------------------
def plot_attribution_grid(
    images: Any,
    importance_by_method: Mapping[str, Any],
    gad_by_method: Mapping[str, Any],
    model_labels: Sequence[str],
    image_indices: Sequence[int] | None = None,
    clip_percentile: float = 99.0,
    share_across_images: bool = False,
    cmap: str = IMPORTANCE_CMAP,
) -> Figure:
    """Show each image next to its importance maps for every model and the GAD map.

    One row per (image, method), images outermost. Columns: the image, the original model, each
    support model, GAD. All maps of a row share one colour scale from 0 to the
    ``clip_percentile``-th percentile of the row's model maps (GAD keeps a subset of the original's
    values, so it never sets the scale); each row has its colour bar.

    Parameters
    ----------
    images : (N, C, H, W) float array in [0, 1], C in {1, 3}
    importance_by_method : dict method -> (M, N, H, W) non-negative array
        Model 0 is the original, 1..M-1 the support models.
    gad_by_method : dict method -> (N, H, W) non-negative array
        Same methods as ``importance_by_method``.
    model_labels : M strings, e.g. ``["original", "support 1 (α=0.5)", ...]``
    image_indices : indices of the images to show; default all N.
    clip_percentile : upper end of the colour scale, as a percentile in (0, 100]; 100 = the maximum.
        Gradient maps have a few extreme pixels that would otherwise wash out the rest.
    share_across_images : if True, one colour scale per method over all shown images (compares
        magnitudes between images); by default each row has its own scale.
    cmap : matplotlib colour map for importance.

    Returns
    -------
    Figure with ``rows * (M + 2)`` image axes plus ``rows`` colour-bar axes,
    rows = len(image_indices) * len(methods).
    """
    imgs = _validate_images(images)
    n_images, _, height, width = imgs.shape
    labels = [str(label) for label in model_labels]
    n_models = len(labels)
    if n_models < 1:
        raise ValueError("model_labels is empty; give one label per model (original first)")
    if not 0.0 < clip_percentile <= 100.0:
        raise ValueError(f"clip_percentile must be in (0, 100]; got {clip_percentile}")
    methods = list(importance_by_method)
    if not methods:
        raise ValueError("importance_by_method is empty; give at least one method")
    if set(methods) != set(gad_by_method):
        raise ValueError(
            f"importance_by_method and gad_by_method must have the same methods; got "
            f"{sorted(methods)} and {sorted(gad_by_method)}"
        )
    maps: dict[str, np.ndarray] = {}
    gads: dict[str, np.ndarray] = {}
    for method in methods:
        maps[method] = _validate_importance(
            importance_by_method[method],
            (n_models, n_images, height, width),
            f"importance_by_method[{method!r}]",
            "(M, N, H, W)",
        )
        gads[method] = _validate_importance(
            gad_by_method[method],
            (n_images, height, width),
            f"gad_by_method[{method!r}]",
            "(N, H, W)",
        )
    indices = _validate_indices(image_indices, n_images)

    scales: dict[tuple[int, str], float] = {}
    for method in methods:
        if share_across_images:
            vmax = _display_max(maps[method][:, indices], clip_percentile)
            scales.update({(i, method): vmax for i in indices})
        else:
            scales.update({(i, method): _display_max(maps[method][:, i], clip_percentile) for i in indices})

    n_rows, n_cols = len(indices) * len(methods), n_models + 2
    fig, grid = plt.subplots(
        n_rows,
        n_cols,
        figsize=(1.7 * n_cols + 1.2, 1.7 * n_rows + 0.6),
        squeeze=False,
        layout="constrained",
    )
    column_titles = ["image", *labels, "GAD"]
    row = 0
    for i in indices:
        for method in methods:
            row_axes = grid[row]
            _show_image(row_axes[0], imgs[i])
            row_axes[0].set_ylabel(f"image {i}\n{method}")
            vmax = scales[(i, method)]
            panels = [*maps[method][:, i], gads[method][i]]
            for ax, panel in zip(row_axes[1:], panels, strict=True):
                mappable = ax.imshow(panel, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
                _hide_ticks(ax)
            if row == 0:
                for ax, title in zip(row_axes, column_titles, strict=True):
                    ax.set_title(title, fontsize=9)
            colorbar = fig.colorbar(mappable, ax=list(row_axes[1:]), shrink=0.9, pad=0.01)
            colorbar.set_label(f"{method} importance", fontsize=8)
            colorbar.ax.tick_params(labelsize=7)
            row += 1
    scale_note = "per method" if share_across_images else "per row"
    fig.suptitle(
        f"Importance maps: original, support models and GAD (shared scale {scale_note}, "
        f"clipped at the {clip_percentile:g}th percentile)",
        fontsize=10,
    )
    return fig


def plot_hulls(
    image: Any,
    original_polygons: Sequence[Any],
    gad_polygons: Sequence[Any],
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Draw the convex-hull regions of the original map and of the GAD map over the image.

    Parameters
    ----------
    image : (C, H, W) float array in [0, 1], C in {1, 3}
    original_polygons, gad_polygons : shapely Polygons (or MultiPolygons) in pixel coordinates,
        x = column, y = row; pixel (r, c) covers [c, c+1] x [r, r+1]. Empty geometries are skipped.
    ax : Axes to draw on; default a new figure.
    title : axes title; default "Regions: original vs GAD".

    Returns
    -------
    The Figure holding ``ax``. Original hulls are orange and dashed, GAD hulls blue and solid.
    """
    img = _validate_images(_as_array(image, "image")[None], name="image", expected="(C, H, W)")[0]
    _, height, width = img.shape
    fig, ax = _single_axes(ax, figsize=(4.2, 4.2))
    _show_image(ax, img, extent=(0, width, height, 0))  # pixel (r, c) spans [c, c+1] x [r, r+1]
    halo = [patheffects.withStroke(linewidth=3.0, foreground="white")]
    counts = {}
    for name, polygons, style in (
        ("original", original_polygons, "--"),
        ("gad", gad_polygons, "-"),
    ):
        color = REGION_SET_COLORS[name]
        rings = _polygon_rings(polygons, f"{name}_polygons")
        counts[name] = len(rings)
        for ring in rings:
            ax.add_patch(
                PolygonPatch(
                    ring,
                    closed=True,
                    facecolor=color,
                    alpha=0.18,
                    edgecolor="none",
                )
            )
            ax.add_patch(
                PolygonPatch(
                    ring,
                    closed=True,
                    fill=False,
                    edgecolor=color,
                    linewidth=1.6,
                    linestyle=style,
                    path_effects=halo,
                )
            )
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    _hide_ticks(ax)
    ax.legend(
        handles=[
            Line2D(
                [],
                [],
                color=REGION_SET_COLORS["original"],
                linestyle="--",
                linewidth=1.6,
                label=f"original ({_count(counts['original'], 'region')})",
            ),
            Line2D(
                [],
                [],
                color=REGION_SET_COLORS["gad"],
                linestyle="-",
                linewidth=1.6,
                label=f"GAD ({_count(counts['gad'], 'region')})",
            ),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        ncols=1,  # one entry per line: side-by-side panels never overlap their legends
        fontsize=8,
        frameon=False,
    )
    ax.set_title(title if title is not None else "Regions: original vs GAD", fontsize=10)
    return fig


def plot_occlusion_examples(
    images: Any,
    masks_by_set: Mapping[str, Any],
    drops: Mapping[str, Any],
    fill_images: Any = None,
    image_indices: Sequence[int] | None = None,
) -> Figure:
    """Show each image with each region set occluded, titled by the score drop and RS.

    Parameters
    ----------
    images : (N, C, H, W) float array in [0, 1], C in {1, 3}
    masks_by_set : dict region-set name -> (N, H, W) bool array (True = occluded)
    drops : dict region-set name -> (N,) score drop s(I) - s(I occluded); same names as masks.
    fill_images : what replaces occluded pixels: None = black (0, the pipeline's default fill),
        a float in [0, 1], or an (N, C, H, W) array (dataset mean, blur ...).
    image_indices : indices of the images to show; default all N.

    Returns
    -------
    Figure with ``len(image_indices) * (1 + len(masks_by_set))`` axes: per row the image, then
    one occluded version per region set. RS = drop / occluded pixels ("n/a" for an empty mask).
    """
    imgs = _validate_images(images)
    n_images, _, height, width = imgs.shape
    names = list(masks_by_set)
    if not names:
        raise ValueError("masks_by_set is empty; give at least one region set")
    if set(names) != set(drops):
        raise ValueError(
            f"masks_by_set and drops must have the same region sets; got {sorted(names)} and {sorted(drops)}"
        )
    masks = {}
    drop_values = {}
    for name in names:
        mask = _as_array(masks_by_set[name], f"masks_by_set[{name!r}]")
        if mask.shape != (n_images, height, width):
            raise ValueError(
                f"masks_by_set[{name!r}] must have shape (N, H, W) = {(n_images, height, width)}; "
                f"got {mask.shape}"
            )
        if mask.dtype != bool:
            if not np.isin(mask, (0, 1)).all():
                raise ValueError(f"masks_by_set[{name!r}] must be boolean (or 0/1); got {mask.dtype}")
            mask = mask.astype(bool)
        masks[name] = mask
        drop = _as_array(drops[name], f"drops[{name!r}]").astype(float)
        if drop.shape != (n_images,):
            raise ValueError(f"drops[{name!r}] must have shape (N,) = ({n_images},); got {drop.shape}")
        drop_values[name] = drop
    fill = _validate_fill(fill_images, imgs.shape)
    indices = _validate_indices(image_indices, n_images)

    n_cols = 1 + len(names)
    fig, grid = plt.subplots(
        len(indices),
        n_cols,
        figsize=(2.1 * n_cols, 2.3 * len(indices) + 0.5),
        squeeze=False,
        layout="constrained",
    )
    for row, i in enumerate(indices):
        _show_image(grid[row, 0], imgs[i])
        grid[row, 0].set_title(f"image {i}", fontsize=9)
        for col, name in enumerate(names, start=1):
            ax = grid[row, col]
            mask = masks[name][i]
            occluded = np.where(mask[None], fill[i], imgs[i])
            _show_image(ax, occluded)
            if 0 < mask.sum() < mask.size:  # outline the occluded set; a dark fill can hide it
                ax.contour(
                    mask.astype(float),
                    levels=[0.5],
                    linewidths=1.0,
                    colors=[REGION_SET_COLORS.get(name, OKABE_ITO[6])],
                )
            area = int(mask.sum())
            drop = drop_values[name][i]
            rs = drop / area if area > 0 else float("nan")
            ax.set_title(
                f"{name}: {area} px\ndrop {_fmt(drop)} · RS {_fmt(rs)}",
                fontsize=8,
            )
    fig.suptitle("Occlusion of region sets (drop = score before − after; RS = drop per pixel)", fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------
# metric summaries
# --------------------------------------------------------------------------------------------
def plot_rc_distributions(
    table: pd.DataFrame, ax: Axes | None = None, log_scale: bool | None = None
) -> Figure:
    """Distribution of RC per method (experiments as hue), with the RC = 1 line.

    Parameters
    ----------
    table : per-image tidy table with columns experiment, image, method, region_set, rc.
        RC is read from the ``region_set == "gad"`` rows; NaN RC (empty original map) is left out
        and counted in the x label.
    ax : Axes to draw on; default a new figure.
    log_scale : log y axis; default (None) when all RC > 0 and they span more than 20x.
        RC is a ratio, so 0.5 and 2 are equally far from 1 on a log axis.

    Returns
    -------
    The Figure. The top axis gives, per box, the share of images with RC < 1 and their number.
    Lower RC is better (GAD points at less of the image).
    """
    _require_columns(table, (*TIDY_COLUMNS, "rc"), "table")
    gad_rows = table[table["region_set"] == "gad"]
    if gad_rows.empty:
        raise ValueError("table has no rows with region_set == 'gad'; RC is read from those rows")
    rc = pd.to_numeric(gad_rows["rc"], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(rc)
    n_missing = int((~finite).sum())
    values = rc[finite]
    if log_scale is None:
        log_scale = bool(values.size and values.min() > 0 and values.max() / values.min() > 20)
    elif log_scale and values.size and values.min() <= 0:
        raise ValueError(
            f"log_scale=True but RC has values <= 0 (min {values.min():g}, an empty GAD map); "
            f"use log_scale=False"
        )

    methods = _unique(gad_rows["method"])
    experiments = _unique(gad_rows["experiment"])
    groups = {
        (method, experiment): rc[finite & _mask(gad_rows, method=method, experiment=experiment)]
        for method in methods
        for experiment in experiments
    }
    width = max(4.0, 0.9 * len(methods) * len(experiments) + 1.5)
    fig, ax = _single_axes(ax, figsize=(width, 4.0))
    positions = _grouped_boxes(ax, methods, experiments, groups, _palette(experiments))
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1.0, zorder=0)
    if log_scale:
        ax.set_yscale("log")
    _top_annotations(
        ax,
        positions,
        groups,
        lambda v: f"{np.mean(v < 1.0):.0%}\nn={v.size}",
        "share of images with RC < 1",
    )
    note = f" ({n_missing} NaN RC not shown)" if n_missing else ""
    ax.set_xlabel(f"attribution method{note}")
    ax.set_ylabel("RC = complexity(GAD) / complexity(original)")
    ax.set_title("Relative complexity of GAD regions (lower = smaller area)", fontsize=10)
    _hue_legend(ax, experiments, "experiment")
    return fig


def plot_rs_comparison(
    table: pd.DataFrame,
    axes: Axes | Sequence[Axes] | None = None,
    paired: bool = True,
    region_sets: Sequence[str] = ("gad", "rest", "random"),
) -> Figure:
    """RS of GAD regions against the rest of the original regions and a random control.

    Parameters
    ----------
    table : per-image tidy table with columns experiment, image, method, region_set, rs.
    axes : one Axes (``paired=False``) or two (``paired=True``); default a new figure.
    paired : add a panel of the per-image difference RS(gad) − RS(rest) with the zero line; the
        paper's claim is that it is positive.
    region_sets : region sets to compare, in this order; those absent from the table are skipped.

    Returns
    -------
    The Figure. One box group per method (per experiment and method when there are several
    experiments). Higher RS = larger score drop per occluded pixel. NaN RS (an empty region set)
    is left out and counted in the x label.
    """
    _require_columns(table, (*TIDY_COLUMNS, "rs"), "table")
    present = set(table["region_set"])
    sets = [name for name in region_sets if name in present]
    if not sets:
        raise ValueError(f"table has none of the region sets {list(region_sets)}; found {sorted(present)}")
    if paired and not {"gad", "rest"} <= present:
        raise ValueError(
            "paired=True needs region_set 'gad' and 'rest' rows in the table; found "
            f"{sorted(present)}; pass paired=False"
        )
    fig, panels = _panel_axes(axes, 2 if paired else 1, figsize=(5.0, 4.0))
    rs_all = pd.to_numeric(table["rs"], errors="coerce").to_numpy(dtype=float)
    keys = _experiment_method_groups(table)
    group_labels = [label for label, _ in keys]

    boxes = {}
    for label, (experiment, method) in keys:
        for name in sets:
            selected = _mask(table, experiment=experiment, method=method, region_set=name)
            boxes[(label, name)] = rs_all[selected & np.isfinite(rs_all)]
    in_sets = table["region_set"].isin(sets).to_numpy()
    n_missing = int((in_sets & ~np.isfinite(rs_all)).sum())
    ax = panels[0]
    _grouped_boxes(
        ax, group_labels, sets, boxes, {name: REGION_SET_COLORS.get(name, OKABE_ITO[2]) for name in sets}
    )
    ax.axhline(0.0, color="black", linewidth=0.8, zorder=0)
    note = f" ({n_missing} NaN RS not shown)" if n_missing else ""
    ax.set_xlabel(f"attribution method{note}")
    ax.set_ylabel("RS = score drop per occluded pixel")
    ax.set_title("Occlusion sensitivity by region set", fontsize=10)
    _hue_legend(ax, sets, "region set", force=True)

    if paired:
        wide = _paired_rs(table)
        diffs = {}
        for label, (experiment, method) in keys:
            rows = wide[(wide["experiment"] == experiment) & (wide["method"] == method)]
            diff = (rows["gad"] - rows["rest"]).to_numpy(dtype=float)
            diffs[(label, "")] = diff[np.isfinite(diff)]
        n_unpaired = len(wide) - sum(v.size for v in diffs.values())
        ax = panels[1]
        positions = _grouped_boxes(ax, group_labels, [""], diffs, {"": REGION_SET_COLORS["gad"]})
        ax.axhline(0.0, color="black", linestyle="--", linewidth=1.0, zorder=0)
        _top_annotations(
            ax,
            positions,
            diffs,
            lambda v: f"{np.mean(v > 0):.0%}\nn={v.size}",
            "share of images with RS(gad) > RS(rest)",
        )
        note = f" ({n_unpaired} images without both RS not shown)" if n_unpaired else ""
        ax.set_xlabel(f"attribution method{note}")
        ax.set_ylabel("RS(gad) − RS(rest), per image")
        ax.set_title("Paired difference (> 0: GAD regions more sensitive)", fontsize=10)
    return fig


def plot_support_fidelity(fidelity: pd.DataFrame, axes: Sequence[Axes] | None = None) -> Figure:
    """How well the support models keep the original's behaviour as α grows.

    Parameters
    ----------
    fidelity : table with columns experiment, model (0 = original), alpha (0 for the original),
        accuracy, agreement, margin, target_margin, final_loss.
    axes : four Axes; default a new 1 x 4 figure.

    Returns
    -------
    The Figure: test accuracy, argmax agreement with the original, achieved (solid) vs target
    (dashed) mean margin, and final training loss (support models only), each against α; one
    colour per experiment.
    """
    _require_columns(fidelity, FIDELITY_COLUMNS, "fidelity")
    if fidelity.empty:
        raise ValueError("fidelity table is empty")
    fig, panels = _panel_axes(axes, 4, figsize=(14.0, 3.6))
    experiments = _unique(fidelity["experiment"])
    colors = _palette(experiments)
    for experiment in experiments:
        rows = fidelity[fidelity["experiment"] == experiment].sort_values("alpha")
        alpha = rows["alpha"].to_numpy(dtype=float)
        color = colors[experiment]
        for ax, column in zip(panels[:2], ("accuracy", "agreement"), strict=True):
            ax.plot(alpha, rows[column].to_numpy(dtype=float), marker="o", color=color, label=str(experiment))
        panels[2].plot(
            alpha, rows["margin"].to_numpy(dtype=float), marker="o", color=color, label=str(experiment)
        )
        panels[2].plot(
            alpha,
            rows["target_margin"].to_numpy(dtype=float),
            marker="o",
            markerfacecolor="none",
            linestyle="--",
            color=color,
        )
        support = rows[rows["model"] != 0]
        panels[3].plot(
            support["alpha"].to_numpy(dtype=float),
            support["final_loss"].to_numpy(dtype=float),
            marker="o",
            color=color,
            label=str(experiment),
        )
    panels[0].set_ylabel("test accuracy")
    panels[0].set_title("Accuracy", fontsize=10)
    panels[1].set_ylabel("argmax agreement with original")
    panels[1].set_title("Agreement with the original", fontsize=10)
    panels[2].set_ylabel("mean margin between the pair's logits")
    panels[2].set_title("Margin: achieved vs target", fontsize=10)
    panels[3].set_ylabel("final MSE loss")
    panels[3].set_title("Support-model training loss", fontsize=10)
    losses = pd.to_numeric(fidelity.loc[fidelity["model"] != 0, "final_loss"], errors="coerce")
    losses = losses[np.isfinite(losses)]
    if len(losses) and losses.min() > 0 and losses.max() / losses.min() > 20:
        panels[3].set_yscale("log")
    for ax in panels:
        ax.set_xlabel("α (schedule value; 0 = original)")
        ax.grid(True, alpha=0.3)
    for ax in panels[:2]:
        ax.set_ylim(top=1.02)
    panels[2].legend(
        handles=[
            Line2D([], [], color="black", marker="o", label="achieved"),
            Line2D([], [], color="black", marker="o", markerfacecolor="none", linestyle="--", label="target"),
        ],
        fontsize=8,
        loc="best",
    )
    if len(experiments) > 1:
        panels[0].legend(title="experiment", fontsize=8, title_fontsize=8)
    return fig


def plot_alpha_sweep(sweep: pd.DataFrame, axes: Sequence[Axes] | None = None) -> Figure:
    """RC, RS (gad vs rest) and support agreement against the α schedule multiplier.

    Parameters
    ----------
    sweep : per-image rows with columns scale (α schedule multiplier), method, rc, rs_gad,
        rs_rest, agreement (mean over the run's support models). One experiment only: an
        ``experiment`` column, if present, must hold a single value.
    axes : three Axes; default a new 1 x 3 figure.

    Returns
    -------
    The Figure: per method, the median over images (line) and the interquartile range (band).
    RS(gad) is solid, RS(rest) dashed in the method's colour. NaN values are left out.
    """
    _require_columns(sweep, SWEEP_COLUMNS, "sweep")
    if sweep.empty:
        raise ValueError("sweep table is empty")
    if "experiment" in sweep.columns and sweep["experiment"].nunique(dropna=False) > 1:
        raise ValueError(
            f"sweep mixes experiments {sorted(map(str, sweep['experiment'].unique()))}; "
            f"plot one experiment at a time"
        )
    fig, panels = _panel_axes(axes, 3, figsize=(13.0, 3.8))
    methods = _unique(sweep["method"])
    colors = _palette(methods)
    for method in methods:
        rows = sweep[sweep["method"] == method]
        _median_band(panels[0], rows, "rc", colors[method], "-", str(method))
        _median_band(panels[1], rows, "rs_gad", colors[method], "-", str(method))
        _median_band(panels[1], rows, "rs_rest", colors[method], "--", None)
    _median_band(panels[2], sweep, "agreement", "black", "-", None)
    panels[0].axhline(1.0, color="black", linestyle=":", linewidth=1.0, zorder=0)
    panels[0].set_ylabel("RC (median, IQR band)")
    panels[0].set_title("Relative complexity vs α", fontsize=10)
    panels[1].set_ylabel("RS (median, IQR band)")
    panels[1].set_title("Occlusion sensitivity vs α", fontsize=10)
    panels[2].set_ylabel("agreement with original")
    panels[2].set_title("Support-model agreement vs α", fontsize=10)
    scales = np.asarray(_unique(sweep["scale"]), dtype=float)
    for ax in panels:
        ax.set_xlabel("α schedule multiplier")
        ax.grid(True, alpha=0.3)
        if scales.min() > 0 and scales.max() / scales.min() >= 8:  # doubling sweeps read evenly in log2
            ax.set_xscale("log", base=2)
            ax.set_xticks(scales, [f"{v:g}" for v in scales])
    panels[0].legend(title="method", fontsize=8, title_fontsize=8)
    panels[1].legend(
        handles=[
            Line2D([], [], color="black", label="GAD regions"),
            Line2D([], [], color="black", linestyle="--", label="rest of original"),
        ],
        fontsize=8,
    )
    return fig


def plot_gad_vs_smoothgrad(
    table: pd.DataFrame,
    cost: Mapping[str, float] | pd.Series | None = None,
    axes: Sequence[Axes] | None = None,
    variants: Mapping[str, tuple[str, str]] | None = None,
    baseline: str | None = None,
) -> Figure:
    """Compare noise-reduction variants (e.g. Saliency, SmoothGrad, GAD) by area, RS and cost.

    Parameters
    ----------
    table : per-image tidy table with columns experiment, image, method, region_set,
        complexity, rs.
    cost : seconds per image, keyed by variant label (drawn in the given order); adds a panel.
    axes : two Axes, or three when ``cost`` is given; default a new figure.
    variants : display label -> (method, region_set) selecting each variant's regions, in order.
        Default: for each method, ``method`` -> (method, "original") and ``GAD(method)`` ->
        (method, "gad"), for the pairs present in the table.
    baseline : label of the variant complexity is relative to; default the first variant.

    Returns
    -------
    The Figure: complexity relative to the baseline per image (an RC against the baseline; the
    baseline itself is the line at 1; a zero baseline gives NaN, left out), RS of each variant's
    regions, and optionally the cost bars. Experiments are the hue.
    """
    _require_columns(table, (*TIDY_COLUMNS, "complexity", "rs"), "table")
    if variants is None:
        variants = {}
        for method in _unique(table["method"]):
            sets = set(table.loc[table["method"] == method, "region_set"])
            if "original" in sets:
                variants[str(method)] = (method, "original")
            if "gad" in sets:
                variants[f"GAD({method})"] = (method, "gad")
    variants = dict(variants)
    if not variants:
        raise ValueError("no variants: the table has no 'original' or 'gad' rows")
    for label, (method, region_set) in variants.items():
        if not (_mask(table, method=method, region_set=region_set)).any():
            raise ValueError(
                f"variant {label!r} selects method={method!r}, region_set={region_set!r}, "
                f"which has no rows in the table"
            )
    baseline = next(iter(variants)) if baseline is None else baseline
    if baseline not in variants:
        raise ValueError(f"baseline {baseline!r} is not a variant; use one of {list(variants)}")

    fig, panels = _panel_axes(axes, 3 if cost is not None else 2, figsize=(5.0, 4.0))
    experiments = _unique(table["experiment"])
    palette = _palette(experiments)
    index = ["experiment", "image"]
    per_variant = {}
    for label, (method, region_set) in variants.items():
        rows = table[_mask(table, method=method, region_set=region_set)]
        if rows.duplicated(index).any():
            raise ValueError(
                f"variant {label!r} has more than one row per (experiment, image); the table "
                f"must hold one row per experiment, image, method and region_set"
            )
        per_variant[label] = rows.set_index(index)
    base = pd.to_numeric(per_variant[baseline]["complexity"], errors="coerce")

    labels = [label for label in variants if label != baseline]
    ratios, rs_groups = {}, {}
    for label in variants:
        rows = per_variant[label]
        rs = pd.to_numeric(rows["rs"], errors="coerce")
        comp = pd.to_numeric(rows["complexity"], errors="coerce")
        ratio = comp / base.reindex(comp.index).where(lambda s: s > 0)
        for experiment in experiments:
            in_exp = rows.index.get_level_values("experiment") == experiment
            r = ratio[in_exp].to_numpy(dtype=float)
            ratios[(label, experiment)] = r[np.isfinite(r)]
            s = rs[in_exp].to_numpy(dtype=float)
            rs_groups[(label, experiment)] = s[np.isfinite(s)]
    ax = panels[0]
    if labels:
        positions = _grouped_boxes(ax, labels, experiments, ratios, palette)
        _top_annotations(
            ax,
            positions,
            {k: v for k, v in ratios.items() if k[0] != baseline},
            lambda v: f"{np.mean(v < 1.0):.0%}\nn={v.size}",
            f"share of images smaller than {baseline}",
        )
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1.0, zorder=0)
    ax.set_ylabel(f"complexity / complexity({baseline})")
    ax.set_title(f"Area relative to {baseline} (lower = smaller)", fontsize=10)
    ax.set_xlabel("variant")
    _slant_ticks(ax)
    ax = panels[1]
    _grouped_boxes(ax, list(variants), experiments, rs_groups, palette)
    ax.axhline(0.0, color="black", linewidth=0.8, zorder=0)
    ax.set_ylabel("RS = score drop per occluded pixel")
    ax.set_title("Occlusion sensitivity of each variant's regions", fontsize=10)
    ax.set_xlabel("variant")
    _slant_ticks(ax)
    _hue_legend(ax, experiments, "experiment")
    if cost is not None:
        names = [str(name) for name in cost.keys()]
        seconds = np.array([float(v) for v in cost.values()], dtype=float)
        if not names:
            raise ValueError("cost is empty; pass None to leave the cost panel out")
        if not np.all(np.isfinite(seconds)) or (seconds < 0).any():
            raise ValueError(
                f"cost must hold finite non-negative seconds; got {dict(zip(names, seconds, strict=True))}"
            )
        ax = panels[2]
        bars = ax.bar(np.arange(len(names)), seconds, color=OKABE_ITO[2])
        ax.bar_label(bars, labels=[_fmt(v) for v in seconds], fontsize=8)
        ax.set_xticks(np.arange(len(names)), names)
        _slant_ticks(ax)
        ax.set_ylabel("seconds per image")
        ax.set_title("Cost", fontsize=10)
        ax.set_xlabel("variant")
    return fig


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------
def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write ``fig`` as a PNG (150 dpi) atomically, then close it.

    Parameters
    ----------
    fig : the Figure to write.
    path : target file; must end in ``.png``. Parent folders are created.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure; got {type(fig).__name__}")
    if os.fspath(path).lower().endswith(".png") is False:
        raise ValueError(f"save_figure writes PNG; the path must end in .png, got {os.fspath(path)!r}")
    try:
        with atomic_path(path) as tmp:
            # the temporary name ends in .tmp, so matplotlib cannot infer the format from it
            fig.savefig(tmp, format="png", dpi=PNG_DPI)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _as_array(value: Any, name: str) -> np.ndarray:
    """A numpy view of an array-like (torch tensors included, without importing torch)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array; got dtype {arr.dtype}")
    return arr


def _validate_images(images: Any, name: str = "images", expected: str = "(N, C, H, W)") -> np.ndarray:
    arr = _as_array(images, name)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3) or 0 in arr.shape:
        shape = arr.shape[1:] if expected == "(C, H, W)" else arr.shape
        raise ValueError(f"{name} must have shape {expected} with C in {{1, 3}}; got {shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -_PIXEL_RANGE_TOLERANCE or hi > 1 + _PIXEL_RANGE_TOLERANCE:
        raise ValueError(
            f"{name} must be in pixel space [0, 1]; got values in [{lo:.3g}, {hi:.3g}] "
            f"(normalised images? pass the unnormalised ones)"
        )
    return arr


def _validate_importance(value: Any, shape: tuple[int, ...], name: str, axes: str) -> np.ndarray:
    arr = _as_array(value, name)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {axes} = {shape}; got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds NaN or infinite values")
    if arr.size and arr.min() < 0:
        raise ValueError(
            f"{name} has negative values (min {arr.min():.3g}); importance must be non-negative "
            f"(use gadlib.method.fusion.pixel_importance)"
        )
    return arr


def _validate_indices(indices: Sequence[int] | None, n: int) -> list[int]:
    if indices is None:
        return list(range(n))
    chosen = [int(i) for i in np.atleast_1d(np.asarray(indices))]
    if not chosen:
        raise ValueError("image_indices is empty; give at least one index or None for all")
    bad = [i for i in chosen if not 0 <= i < n]
    if bad:
        raise ValueError(f"image_indices {bad} out of range for {n} images")
    return chosen


def _validate_fill(fill: Any, shape: tuple[int, ...]) -> np.ndarray:
    if fill is None:
        return np.zeros(shape, dtype=float)
    arr = _as_array(fill, "fill_images")
    if arr.ndim == 0:
        value = float(arr)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"fill_images as a number must be in [0, 1]; got {value}")
        return np.full(shape, value)
    if arr.shape != shape:
        raise ValueError(f"fill_images must have shape (N, C, H, W) = {shape}; got {arr.shape}")
    return _validate_images(arr, name="fill_images")


def _display_max(values: np.ndarray, percentile: float) -> float:
    """Upper end of a colour scale that starts at 0; positive even for all-zero maps."""
    vmax = float(np.percentile(values, percentile)) if values.size else 0.0
    if vmax <= 0.0:
        vmax = float(values.max()) if values.size else 0.0
    return vmax if vmax > 0.0 else 1.0


def _show_image(ax: Axes, image: np.ndarray, extent: tuple[float, ...] | None = None) -> None:
    """Show a (C, H, W) pixel-space image: grey for C = 1, RGB for C = 3."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", extent=extent)
    else:
        ax.imshow(np.clip(np.moveaxis(image, 0, -1), 0.0, 1.0), interpolation="nearest", extent=extent)
    _hide_ticks(ax)


def _slant_ticks(ax: Axes) -> None:
    """Slant x tick labels so long variant names do not overlap."""
    for label in ax.get_xticklabels():
        label.set_rotation(20)
        label.set_horizontalalignment("right")


def _hide_ticks(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _polygon_rings(polygons: Sequence[Any], name: str) -> list[np.ndarray]:
    """Exterior and interior rings of every polygon, as (n, 2) x/y arrays."""
    if isinstance(polygons, (ShapelyPolygon, MultiPolygon)):
        polygons = [polygons]
    rings = []
    for k, geometry in enumerate(polygons):
        if isinstance(geometry, ShapelyPolygon):
            parts = [geometry]
        elif isinstance(geometry, MultiPolygon):
            parts = list(geometry.geoms)
        else:
            raise TypeError(
                f"{name}[{k}] must be a shapely Polygon or MultiPolygon; got {type(geometry).__name__}"
            )
        for part in parts:
            if part.is_empty:
                continue
            rings.append(np.asarray(part.exterior.coords))
            rings.extend(np.asarray(hole.coords) for hole in part.interiors)
    return rings


def _require_columns(table: Any, columns: Sequence[str], name: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame; got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} is missing columns {missing}; it has {list(table.columns)}")


def _unique(series: pd.Series) -> list[Any]:
    """Distinct values in order of first appearance (the caller's order, not alphabetical)."""
    return list(pd.unique(series))


def _mask(table: pd.DataFrame, **equal: Any) -> np.ndarray:
    selected = np.ones(len(table), dtype=bool)
    for column, value in equal.items():
        selected &= (table[column] == value).to_numpy()
    return selected


def _palette(keys: Sequence[Any]) -> dict[Any, str]:
    return {key: OKABE_ITO[k % len(OKABE_ITO)] for k, key in enumerate(keys)}


def _single_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes; got {type(ax).__name__}")
    return _root_figure(ax), ax


def _panel_axes(
    axes: Axes | Sequence[Axes] | None, n: int, figsize: tuple[float, float]
) -> tuple[Figure, list[Axes]]:
    """The caller's axes (checked to be ``n``) or a new 1 x n figure; figsize is per panel if new."""
    if axes is None:
        width = figsize[0] * n if figsize[0] < 8 else figsize[0]
        fig, grid = plt.subplots(1, n, figsize=(width, figsize[1]), squeeze=False, layout="constrained")
        return fig, list(grid[0])
    panels = [axes] if isinstance(axes, Axes) else list(np.ravel(np.asarray(axes, dtype=object)))
    if len(panels) != n or not all(isinstance(a, Axes) for a in panels):
        raise ValueError(f"axes must hold {n} matplotlib Axes for this figure; got {len(panels)}")
    return _root_figure(panels[0]), panels


def _root_figure(ax: Axes) -> Figure:
    try:
        return ax.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10
        return ax.figure


def _grouped_boxes(
    ax: Axes,
    groups: Sequence[Any],
    hues: Sequence[Any],
    data: Mapping[tuple[Any, Any], np.ndarray],
    colors: Mapping[Any, str],
) -> dict[tuple[Any, Any], float]:
    """Box plot plus jittered points per (group, hue); returns the x position of each box."""
    rng = np.random.default_rng(_JITTER_SEED)
    width = 0.8 / max(1, len(hues))
    positions = {}
    for g, group in enumerate(groups):
        for h, hue in enumerate(hues):
            x = g + (h - (len(hues) - 1) / 2) * width
            positions[(group, hue)] = x
            values = np.asarray(data.get((group, hue), np.empty(0)), dtype=float)
            if values.size == 0:
                continue
            color = colors[hue]
            ax.boxplot(
                [values],
                positions=[x],
                widths=width * 0.8,
                patch_artist=True,
                showfliers=False,
                manage_ticks=False,
                boxprops={"facecolor": color, "alpha": 0.35, "edgecolor": color},
                medianprops={"color": "black", "linewidth": 1.5},
                whiskerprops={"color": color},
                capprops={"color": color},
            )
            jitter = rng.uniform(-width * 0.25, width * 0.25, size=values.size)
            ax.scatter(x + jitter, values, s=8, color=color, alpha=0.7, linewidths=0, zorder=3)
    ax.set_xticks(np.arange(len(groups)), [str(g) for g in groups])
    if len(groups) > 3:  # several experiments x methods: slanted labels stay readable
        plt.setp(ax.get_xticklabels(), rotation=35, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    return positions


def _top_annotations(ax, positions, data, describe, label) -> None:
    """Per-box summary text on a secondary x axis at the top, clear of the data."""
    keys = [key for key in positions if key in data and np.asarray(data[key]).size]
    top = ax.secondary_xaxis("top")
    top.set_xticks(
        [positions[key] for key in keys], [describe(np.asarray(data[key], dtype=float)) for key in keys]
    )
    top.tick_params(labelsize=7, length=0)
    top.set_xlabel(label, fontsize=8)


def _hue_legend(ax: Axes, hues: Sequence[Any], title: str, force: bool = False) -> None:
    if len(hues) < 2 and not force:
        return
    colors = REGION_SET_COLORS if title == "region set" else _palette(hues)
    handles = [Patch(facecolor=colors.get(h, OKABE_ITO[2]), alpha=0.6, label=str(h)) for h in hues]
    ax.legend(handles=handles, title=title, fontsize=8, title_fontsize=8, loc="best")


def _experiment_method_groups(table: pd.DataFrame) -> list[tuple[str, tuple[Any, Any]]]:
    """Box-group labels: the method alone for one experiment, 'experiment\\nmethod' for several."""
    experiments = _unique(table["experiment"])
    methods = _unique(table["method"])
    keys = []
    for experiment in experiments:
        for method in methods:
            if _mask(table, experiment=experiment, method=method).any():
                label = str(method) if len(experiments) == 1 else f"{experiment}\n{method}"
                keys.append((label, (experiment, method)))
    return keys


def _paired_rs(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (experiment, image, method) with RS columns 'gad' and 'rest'."""
    index = ["experiment", "image", "method"]
    rows = table[table["region_set"].isin(["gad", "rest"])]
    duplicated = rows.duplicated([*index, "region_set"])
    if duplicated.any():
        first = rows.loc[duplicated, [*index, "region_set"]].iloc[0].to_dict()
        raise ValueError(
            f"table has more than one row for {first}; it must hold one row per experiment, "
            f"image, method and region_set"
        )
    wide = rows.assign(rs=pd.to_numeric(rows["rs"], errors="coerce")).pivot(
        index=index, columns="region_set", values="rs"
    )
    return wide.reindex(columns=["gad", "rest"]).reset_index()


def _median_band(
    ax: Axes, rows: pd.DataFrame, column: str, color: str, style: str, label: str | None
) -> None:
    values = rows[["scale", column]].assign(**{column: pd.to_numeric(rows[column], errors="coerce")})
    values = values[np.isfinite(values[column].to_numpy(dtype=float))]
    if values.empty:
        return
    grouped = values.groupby("scale")[column]
    median = grouped.median()
    q1, q3 = grouped.quantile(0.25), grouped.quantile(0.75)
    x = median.index.to_numpy(dtype=float)
    ax.plot(x, median.to_numpy(), color=color, linestyle=style, marker="o", markersize=4, label=label)
    ax.fill_between(x, q1.to_numpy(), q3.to_numpy(), color=color, alpha=0.15, linewidth=0)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _fmt(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3g}"
