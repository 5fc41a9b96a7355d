"""Figures of the GAD study: attribution grids, hulls, occlusion examples and metric summaries.

Every plot helper takes plain arrays or pandas DataFrames, draws on the ``ax`` / ``axes`` it is
given (or on a new figure), and returns the matplotlib Figure. None of them writes a file: only
:func:`save_figure` does, and only the figures stage calls it. Inputs are never modified.

The metric summaries are seaborn box, strip and line plots; the image figures are matplotlib
``imshow`` and polygon drawings. Figures normalise for display only (the saved maps and metrics
stay raw). Colours are Okabe-Ito, distinguishable under the common colour-vision deficiencies;
each region set keeps one colour across all figures.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import MatplotlibDeprecationWarning, patheffects
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import PathPatch
from matplotlib.path import Path
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from gadlib.common.atomic import atomic_path
from gadlib.common.checks import as_numpy, check_images, check_importance

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
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
REGION_SET_COLORS = {"original": "#E69F00", "gad": "#0072B2", "rest": "#D55E00", "random": "#999999"}
IMPORTANCE_CMAP = "viridis"  # perceptually uniform, colour-blind safe, readable in greyscale
PNG_DPI = 150
BOX_WIDTH = 0.8  # of each box group (seaborn's default); the per-box annotations are placed with it
_JITTER_SEED = 0  # strip-plot jitter is display only; a fixed seed keeps figures reproducible

TIDY_COLUMNS = ("experiment", "image", "method", "region_set")
FIDELITY_COLUMNS = ("experiment", "model", "alpha", "accuracy", "agreement", "margin", "target_margin", "final_loss")
SWEEP_COLUMNS = ("scale", "method", "rc", "rs_gad", "rs_rest", "agreement")


# ---- images: attribution maps, hulls, occlusion --------------------------------------------
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
    importance_by_method : dict method -> (M, N, H, W) non-negative array; model 0 is the original.
    gad_by_method : dict method -> (N, H, W) non-negative array; the same methods.
    model_labels : M strings, e.g. ``["original", "support 1 (α=0.5)", ...]``
    image_indices : indices of the images to show; default all N.
    clip_percentile : upper end of the colour scale, a percentile in (0, 100]; 100 = the maximum.
        Gradient maps have a few extreme pixels that would otherwise wash out the rest.
    share_across_images : one colour scale per method over all shown images (compares magnitudes
        between images) instead of one per row.
    cmap : matplotlib colour map for importance.

    Returns
    -------
    Figure with ``rows * (M + 2)`` image axes plus ``rows`` colour-bar axes,
    rows = len(image_indices) * len(methods).
    """
    imgs = _validate_images(images)
    n_images, _, height, width = imgs.shape
    labels = [str(label) for label in model_labels]
    methods = list(importance_by_method)
    if not labels or not methods:
        raise ValueError(
            "model_labels and importance_by_method must not be empty; give one label per model "
            "(original first) and at least one method"
        )
    if not 0.0 < clip_percentile <= 100.0:
        raise ValueError(f"clip_percentile must be in (0, 100]; got {clip_percentile}")
    if set(methods) != set(gad_by_method):
        raise ValueError(
            f"importance_by_method and gad_by_method must have the same methods; got "
            f"{sorted(methods)} and {sorted(gad_by_method)}"
        )
    maps = {
        m: _validate_importance(
            importance_by_method[m],
            (len(labels), n_images, height, width),
            f"importance_by_method[{m!r}]",
            "(M, N, H, W)",
        )
        for m in methods
    }
    gads = {
        m: _validate_importance(gad_by_method[m], (n_images, height, width), f"gad_by_method[{m!r}]", "(N, H, W)")
        for m in methods
    }
    indices = _validate_indices(image_indices, n_images)

    n_cols = len(labels) + 2
    rows = [(i, method) for i in indices for method in methods]
    fig, grid = plt.subplots(
        len(rows), n_cols, figsize=(1.7 * n_cols + 1.2, 1.7 * len(rows) + 0.6), squeeze=False, layout="constrained"
    )
    for row_axes, (i, method) in zip(grid, rows, strict=True):
        vmax = _display_max(maps[method][:, indices] if share_across_images else maps[method][:, i], clip_percentile)
        _show_image(row_axes[0], imgs[i])
        row_axes[0].set_ylabel(f"image {i}\n{method}")
        for ax, panel in zip(row_axes[1:], [*maps[method][:, i], gads[method][i]], strict=True):
            mappable = ax.imshow(panel, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
            _hide_ticks(ax)
        colorbar = fig.colorbar(mappable, ax=list(row_axes[1:]), shrink=0.9, pad=0.01)
        colorbar.set_label(f"{method} importance", fontsize=8)
        colorbar.ax.tick_params(labelsize=7)
    for ax, title in zip(grid[0], ["image", *labels, "GAD"], strict=True):
        ax.set_title(title, fontsize=9)
    fig.suptitle(
        f"Importance maps: original, support models and GAD (shared scale "
        f"{'per method' if share_across_images else 'per row'}, clipped at the {clip_percentile:g}th "
        f"percentile)",
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
    The Figure holding ``ax``: one patch per region (holes left open), original hulls orange and
    dashed, GAD hulls blue and solid; the legend below the image counts the regions of each.
    """
    single = _as_array(image, "image")
    if single.ndim != 3:
        raise ValueError(f"image must be one (C, H, W) image; got {single.shape}")
    img = _validate_images(single[None], name="image")[0]
    _, height, width = img.shape
    fig, (ax,) = _axes(ax, [4.2], 4.2)
    _show_image(ax, img, extent=(0, width, height, 0))  # pixel (r, c) spans [c, c+1] x [r, r+1]
    halo = [patheffects.withStroke(linewidth=3.0, foreground="white")]  # outlines stay visible on any image
    handles = []
    for name, label, polygons, style in (
        ("original", "original", original_polygons, "--"),
        ("gad", "GAD", gad_polygons, "-"),
    ):
        color, parts = REGION_SET_COLORS[name], _polygon_parts(polygons, f"{name}_polygons")
        for part in parts:
            ax.add_patch(
                PathPatch(
                    _polygon_path(part),
                    facecolor=to_rgba(color, 0.18),
                    edgecolor=color,
                    linewidth=1.6,
                    linestyle=style,
                    path_effects=halo,
                )
            )
        handles.append(
            Line2D(
                [],
                [],
                color=color,
                linestyle=style,
                linewidth=1.6,
                label=f"{label} ({len(parts)} region{'' if len(parts) == 1 else 's'})",
            )
        )
    ax.set(xlim=(0, width), ylim=(height, 0))
    # one entry per line, below the image: side-by-side panels never overlap their legends
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=8, frameon=False)
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
    if not names or set(names) != set(drops):
        raise ValueError(
            f"masks_by_set and drops must name the same region sets, at least one; got {sorted(names)} "
            f"and {sorted(drops)}"
        )
    masks = {name: _as_array(masks_by_set[name], f"masks_by_set[{name!r}]") for name in names}
    drop_values = {name: _as_array(drops[name], f"drops[{name!r}]").astype(float) for name in names}
    for name in names:
        if masks[name].shape != (n_images, height, width) or not np.isin(masks[name], (0, 1)).all():
            raise ValueError(
                f"masks_by_set[{name!r}] must be a boolean (or 0/1) array of shape (N, H, W) = "
                f"{(n_images, height, width)}; got {masks[name].dtype} {masks[name].shape}"
            )
        if drop_values[name].shape != (n_images,):
            raise ValueError(f"drops[{name!r}] must have shape (N,) = ({n_images},); got {drop_values[name].shape}")
    fill = _validate_fill(fill_images, imgs.shape)
    indices = _validate_indices(image_indices, n_images)

    n_cols = 1 + len(names)
    fig, grid = plt.subplots(
        len(indices), n_cols, figsize=(2.1 * n_cols, 2.3 * len(indices) + 0.5), squeeze=False, layout="constrained"
    )
    for row_axes, i in zip(grid, indices, strict=True):
        _show_image(row_axes[0], imgs[i])
        row_axes[0].set_title(f"image {i}", fontsize=9)
        for ax, name in zip(row_axes[1:], names, strict=True):
            mask = masks[name][i].astype(bool)
            _show_image(ax, np.where(mask[None], fill[i], imgs[i]))
            if 0 < mask.sum() < mask.size:  # outline the occluded set; a dark fill can hide it
                ax.contour(
                    mask.astype(float), levels=[0.5], linewidths=1.0, colors=[REGION_SET_COLORS.get(name, OKABE_ITO[6])]
                )
            area, drop = int(mask.sum()), drop_values[name][i]
            ax.set_title(
                f"{name}: {area} px\ndrop {_fmt(drop)} · RS {_fmt(drop / area if area else np.nan)}", fontsize=8
            )
    fig.suptitle("Occlusion of region sets (drop = score before − after; RS = drop per pixel)", fontsize=10)
    return fig


# ---- metric summaries -----------------------------------------------------------------------
def plot_rc_distributions(table: pd.DataFrame, ax: Axes | None = None, log_scale: bool | None = None) -> Figure:
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
    The Figure: a box and the points of each (method, experiment). The top axis gives, per box,
    the share of images with RC < 1 and their number. Lower RC is better (GAD points at less of
    the image).
    """
    _require_columns(table, (*TIDY_COLUMNS, "rc"), "table")
    rows = table[table["region_set"] == "gad"]
    if rows.empty:
        raise ValueError("table has no rows with region_set == 'gad'; RC is read from those rows")
    methods, experiments = _unique(rows["method"]), _unique(rows["experiment"])
    rows = rows.assign(rc=pd.to_numeric(rows["rc"], errors="coerce"))
    n_missing = int(rows["rc"].isna().sum())
    rows = rows.dropna(subset=["rc"])
    low, high = (rows["rc"].min(), rows["rc"].max()) if len(rows) else (np.nan, np.nan)
    if log_scale is None:
        log_scale = bool(low > 0 and high / low > 20)
    elif log_scale and low <= 0:
        raise ValueError(f"log_scale=True but RC has values <= 0 (min {low:g}, an empty GAD map); use log_scale=False")
    fig, (ax,) = _axes(ax, [max(5.0, 0.9 * len(methods) * len(experiments) + 2.5)], 4.2)
    _box_strip(ax, rows, "method", "rc", methods, "experiment", experiments, _palette(experiments))
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1.0, zorder=0)
    if log_scale:
        ax.set_yscale("log")
    _annotate_boxes(
        ax, rows, "method", "rc", methods, "experiment", experiments, lambda v: v < 1.0, "share of images with RC < 1"
    )
    ax.set(
        xlabel="attribution method" + (f"\n({n_missing} NaN RC not shown)" if n_missing else ""),
        ylabel="RC = complexity(GAD) / complexity(original)",
    )
    ax.set_title("Relative complexity of GAD regions (lower = smaller area)", fontsize=10)
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
    table : per-image tidy table with columns experiment, image, method, region_set, rs; one row
        per experiment, image, method and region_set.
    axes : one Axes (``paired=False``) or two (``paired=True``); default a new figure.
    paired : add a panel of the per-image difference RS(gad) − RS(rest) with the zero line; the
        paper's claim is that it is positive.
    region_sets : region sets to compare, in this order; those absent from the table are skipped.

    Returns
    -------
    The Figure. One box group per method ("experiment" above "method" when there are several
    experiments), region sets as hue. Higher RS = larger score drop per occluded pixel. NaN RS (an
    empty region set) is left out and counted in the x label. The paired panel's top axis gives,
    per method, the share of images with RS(gad) > RS(rest) and their number.
    """
    _require_columns(table, (*TIDY_COLUMNS, "rs"), "table")
    present = set(table["region_set"])
    sets = [name for name in region_sets if name in present]
    if not sets:
        raise ValueError(f"table has none of the region sets {list(region_sets)}; found {sorted(present)}")
    if paired and not {"gad", "rest"} <= present:
        raise ValueError(
            f"paired=True needs region_set 'gad' and 'rest' rows in the table; found {sorted(present)}; "
            f"pass paired=False"
        )
    _require_unique_rows(table, list(TIDY_COLUMNS))
    several = table["experiment"].nunique() > 1
    group = table["experiment"].astype(str) + "\n" + table["method"].astype(str) if several else table["method"]
    data = table.assign(rs=pd.to_numeric(table["rs"], errors="coerce"), group=group.astype(str))
    rows = data[data["region_set"].isin(sets)]
    groups = _unique(rows["group"])
    fig, panels = _axes(axes, [max(5.0, 0.6 * len(groups) + 2.0)] * (2 if paired else 1), 4.2)
    colors = {name: REGION_SET_COLORS.get(name, OKABE_ITO[2]) for name in sets}
    _box_strip(panels[0], rows.dropna(subset=["rs"]), "group", "rs", groups, "region_set", sets, colors, legend=True)
    panels[0].axhline(0.0, color="black", linewidth=0.8, zorder=0)
    n_missing = int(rows["rs"].isna().sum())
    panels[0].set(
        xlabel="attribution method" + (f"\n({n_missing} NaN RS not shown)" if n_missing else ""),
        ylabel="RS = score drop per occluded pixel",
    )
    panels[0].set_title("Occlusion sensitivity by region set", fontsize=10)
    if paired:
        wide = data.pivot(index=["group", "experiment", "image", "method"], columns="region_set", values="rs")
        diffs = (wide["gad"] - wide["rest"]).rename("diff").reset_index()
        n_unpaired = int(diffs["diff"].isna().sum())
        diffs = diffs.dropna(subset=["diff"])
        _box_strip(panels[1], diffs, "group", "diff", groups, color=REGION_SET_COLORS["gad"])
        panels[1].axhline(0.0, color="black", linestyle="--", linewidth=1.0, zorder=0)
        _annotate_boxes(
            panels[1],
            diffs,
            "group",
            "diff",
            groups,
            None,
            (),
            lambda v: v > 0,
            "share of images with RS(gad) > RS(rest)",
        )
        note = f"\n({n_unpaired} images without both RS not shown)" if n_unpaired else ""
        panels[1].set(xlabel="attribution method" + note, ylabel="RS(gad) − RS(rest), per image")
        panels[1].set_title("Paired difference (> 0: GAD regions more sensitive)", fontsize=10)
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
    colour per experiment. An experiment with several support sets (One vs. All) draws their mean
    and, as a band, their range.
    """
    _require_columns(fidelity, FIDELITY_COLUMNS, "fidelity")
    if fidelity.empty:
        raise ValueError("fidelity table is empty")
    fig, panels = _axes(axes, [3.6] * 4, 3.6)
    data = fidelity.astype({column: float for column in FIDELITY_COLUMNS[2:]})
    experiments = _unique(data["experiment"])
    line = {
        "x": "alpha",
        "hue": "experiment",
        "hue_order": experiments,
        "palette": _palette(experiments),
        "marker": "o",
        "errorbar": ("pi", 100),
    }
    margins = data.melt(["experiment", "alpha"], ["margin", "target_margin"], var_name="margin", value_name="value")
    margins["margin"] = margins["margin"].map({"margin": "achieved", "target_margin": "target"})
    supports = data[data["model"] != 0]
    sns.lineplot(data, y="accuracy", ax=panels[0], legend=False, **line)
    sns.lineplot(data, y="agreement", ax=panels[1], legend=False, **line)
    sns.lineplot(
        margins,
        y="value",
        style="margin",
        style_order=["achieved", "target"],
        dashes={"achieved": "", "target": (4, 2)},
        ax=panels[2],
        **line,
    )
    sns.lineplot(supports, y="final_loss", ax=panels[3], legend=False, **line)
    losses = supports["final_loss"].dropna()
    if len(losses) and losses.min() > 0 and losses.max() / losses.min() > 20:
        panels[3].set_yscale("log")
    ylabels = (
        "test accuracy",
        "argmax agreement with original",
        "mean margin between the pair's logits",
        "final MSE loss",
    )
    titles = ("Accuracy", "Agreement with the original", "Margin: achieved vs target", "Support-model training loss")
    for ax, ylabel, title in zip(panels, ylabels, titles, strict=True):
        ax.set(xlabel="α (schedule value; 0 = original)", ylabel=ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
    for ax in panels[:2]:
        ax.set_ylim(top=1.02)
    _legend_right_of(fig, panels[2])
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
            f"sweep mixes experiments {sorted(map(str, sweep['experiment'].unique()))}; plot one experiment at a time"
        )
    fig, panels = _axes(axes, [4.4] * 3, 3.8)
    data = sweep.astype({column: float for column in SWEEP_COLUMNS if column != "method"})
    methods = _unique(data["method"])
    # median line; errorbar ("pi", 50) is the band from the 25th to the 75th percentile
    line = {
        "x": "scale",
        "hue": "method",
        "hue_order": methods,
        "palette": _palette(methods),
        "marker": "o",
        "estimator": "median",
        "errorbar": ("pi", 50),
    }
    rs = data.melt(["scale", "method"], ["rs_gad", "rs_rest"], var_name="regions", value_name="rs")
    rs["regions"] = rs["regions"].map({"rs_gad": "GAD regions", "rs_rest": "rest of original"})
    sns.lineplot(data, y="rc", ax=panels[0], legend=False, **line)
    sns.lineplot(
        rs,
        y="rs",
        style="regions",
        style_order=["GAD regions", "rest of original"],
        dashes={"GAD regions": "", "rest of original": (4, 2)},
        ax=panels[1],
        **line,
    )
    sns.lineplot(
        data, x="scale", y="agreement", color="black", marker="o", estimator="median", errorbar=None, ax=panels[2]
    )
    panels[0].axhline(1.0, color="black", linestyle=":", linewidth=1.0, zorder=0)
    _legend_right_of(fig, panels[1])  # the RS bands fill the panel: any legend inside covers some
    scales = np.sort(data["scale"].unique())
    ylabels = ("RC (median, IQR band)", "RS (median, IQR band)", "agreement with original")
    titles = ("Relative complexity vs α", "Occlusion sensitivity vs α", "Support-model agreement vs α")
    for ax, ylabel, title in zip(panels, ylabels, titles, strict=True):
        ax.set(xlabel="α schedule multiplier", ylabel=ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        if scales.min() > 0 and scales.max() / scales.min() >= 8:  # doubling sweeps read evenly in log2
            ax.set_xscale("log", base=2)
            ax.set_xticks(scales, [f"{v:g}" for v in scales])
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
    table : per-image tidy table with columns experiment, image, method, region_set, complexity, rs.
    cost : seconds per image, keyed by variant label (drawn in the given order); adds a panel.
    axes : two Axes, or three when ``cost`` is given; default a new figure.
    variants : display label -> (method, region_set) selecting each variant's regions, in order.
        Default: for each method, ``method`` -> (method, "original") and ``GAD(method)`` ->
        (method, "gad"), for the pairs present in the table.
    baseline : label of the variant complexity is relative to; default the first variant.

    Returns
    -------
    The Figure: complexity relative to the baseline per image (an RC against the baseline, which
    is the line at 1; a zero baseline gives NaN, left out), with the share of images smaller than
    the baseline and their number on the top axis; RS of each variant's regions; optionally the
    cost bars. Experiments are the hue.
    """
    _require_columns(table, (*TIDY_COLUMNS, "complexity", "rs"), "table")
    if variants is None:
        pairs = set(zip(table["method"], table["region_set"], strict=True))
        variants = {
            label: (method, region_set)
            for method in _unique(table["method"])
            for label, region_set in ((str(method), "original"), (f"GAD({method})", "gad"))
            if (method, region_set) in pairs
        }
    variants = dict(variants)
    if not variants:
        raise ValueError("no variants: the table has no 'original' or 'gad' rows")
    baseline = next(iter(variants)) if baseline is None else baseline
    if baseline not in variants:
        raise ValueError(f"baseline {baseline!r} is not a variant; use one of {list(variants)}")
    parts = []
    for label, (method, region_set) in variants.items():
        rows = table[(table["method"] == method) & (table["region_set"] == region_set)]
        if rows.empty:
            raise ValueError(
                f"variant {label!r} selects method={method!r}, region_set={region_set!r}, "
                f"which has no rows in the table"
            )
        _require_unique_rows(rows, list(TIDY_COLUMNS))
        parts.append(rows[["experiment", "image", "complexity", "rs"]].assign(variant=label))
    data = pd.concat(parts, ignore_index=True).astype({"complexity": float, "rs": float})
    base = data[data["variant"] == baseline].set_index(["experiment", "image"])["complexity"]
    base = base.where(base > 0).reindex(pd.MultiIndex.from_frame(data[["experiment", "image"]]))
    data["ratio"] = data["complexity"].to_numpy() / base.to_numpy()
    experiments, labels = _unique(data["experiment"]), list(variants)
    others = [label for label in labels if label != baseline]
    ratios = data[data["variant"].isin(others)].dropna(subset=["ratio"])

    box_panel = max(5.0, 0.45 * len(labels) * len(experiments) + 2.0)
    fig, panels = _axes(axes, [box_panel, box_panel, 4.5][: 3 if cost is not None else 2], 4.2)
    _box_strip(
        panels[0], ratios, "variant", "ratio", others, "experiment", experiments, _palette(experiments), legend=False
    )
    _annotate_boxes(
        panels[0],
        ratios,
        "variant",
        "ratio",
        others,
        "experiment",
        experiments,
        lambda v: v < 1.0,
        f"share of images smaller than {baseline}",
    )
    panels[0].axhline(1.0, color="black", linestyle="--", linewidth=1.0, zorder=0)
    panels[0].set(xlabel="variant", ylabel=f"complexity / complexity({baseline})")
    panels[0].set_title(f"Area relative to {baseline} (lower = smaller)", fontsize=10)
    _box_strip(
        panels[1], data.dropna(subset=["rs"]), "variant", "rs", labels, "experiment", experiments, _palette(experiments)
    )
    panels[1].axhline(0.0, color="black", linewidth=0.8, zorder=0)
    panels[1].set(xlabel="variant", ylabel="RS = score drop per occluded pixel")
    panels[1].set_title("Occlusion sensitivity of each variant's regions", fontsize=10)
    if cost is not None:
        seconds = pd.Series(cost, dtype=float)
        if seconds.empty or not np.all(np.isfinite(seconds)) or (seconds < 0).any():
            raise ValueError(
                f"cost must hold finite non-negative seconds per variant, at least one; got "
                f"{seconds.to_dict()}; pass None to leave the cost panel out"
            )
        sns.barplot(x=seconds.index.astype(str), y=seconds.to_numpy(), color=OKABE_ITO[2], ax=panels[2])
        panels[2].bar_label(panels[2].containers[0], labels=[_fmt(v) for v in seconds], fontsize=8)
        panels[2].set(xlabel="variant", ylabel="seconds per image")
        panels[2].set_title("Cost", fontsize=10)
        _slant_ticks(panels[2])
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write ``fig`` as a PNG (150 dpi) atomically, then close it.

    Parameters
    ----------
    fig : the Figure to write.
    path : target file; must end in ``.png``. Parent folders are created.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure; got {type(fig).__name__}")
    if not os.fspath(path).lower().endswith(".png"):
        raise ValueError(f"save_figure writes PNG; the path must end in .png, got {os.fspath(path)!r}")
    try:
        with atomic_path(path) as tmp:
            # the temporary name ends in .tmp, so matplotlib cannot infer the format from it
            fig.savefig(tmp, format="png", dpi=PNG_DPI)
    finally:
        plt.close(fig)


# ---- helpers: summaries ---------------------------------------------------------------------
def _box_strip(
    ax: Axes,
    data: pd.DataFrame,
    x: str,
    y: str,
    order: Sequence[Any],
    hue: str | None = None,
    hue_order: Sequence[Any] = (),
    palette: Mapping[Any, str] | None = None,
    color: str | None = None,
    legend: bool | None = None,
) -> None:
    """A box per (x, hue) level, without fliers since every value is drawn over it as a jittered point.

    ``legend`` (default: when there are several hue levels) goes outside the axes, right, clear of the data.
    """
    hue_kws = {"hue": hue, "hue_order": list(hue_order), "palette": dict(palette)} if hue else {"color": color}
    common = {"data": data, "x": x, "y": y, "order": list(order), "ax": ax, **hue_kws}
    legend = bool(hue) and (len(hue_order) > 1 if legend is None else legend)
    with warnings.catch_warnings():  # seaborn 0.13 passes Axes.bxp the `vert` that matplotlib 3.11 deprecates
        warnings.filterwarnings("ignore", "vert: bool was deprecated", MatplotlibDeprecationWarning)
        sns.boxplot(
            **common,
            width=BOX_WIDTH,
            saturation=1.0,
            showfliers=False,
            boxprops={"alpha": 0.4},
            medianprops={"color": "black", "linewidth": 1.5},
            legend=legend,
        )
    with _seeded_global_rng(_JITTER_SEED):  # seaborn's strip jitter draws from numpy's global generator
        sns.stripplot(**common, dodge=bool(hue), size=3, alpha=0.7, linewidth=0, legend=False)
    if legend:
        sns.move_legend(
            ax,
            "upper left",
            bbox_to_anchor=(1.0, 1.0),
            title=hue.replace("_", " "),
            fontsize=8,
            title_fontsize=8,
            frameon=False,
        )
    _slant_ticks(ax)


def _annotate_boxes(
    ax: Axes,
    data: pd.DataFrame,
    x: str,
    y: str,
    order: Sequence[Any],
    hue: str | None,
    hue_order: Sequence[Any],
    condition: Callable[[np.ndarray], np.ndarray],
    title: str,
) -> None:
    """Above each box of :func:`_box_strip`, the share of its values meeting ``condition`` and their
    number, as tick labels of a secondary x axis at the top (clear of the data)."""
    levels = list(hue_order) or [None]
    width = BOX_WIDTH / len(levels)
    positions, texts = [], []
    for g, level in enumerate(order):
        for h, hue_level in enumerate(levels):
            selected = (data[x] == level) & ((data[hue] == hue_level) if hue else True)
            values = data.loc[selected, y].to_numpy(dtype=float)
            if values.size:  # seaborn dodges the boxes of a group by their hue level's index, as here
                positions.append(g - BOX_WIDTH / 2 + width * (h + 0.5))
                texts.append(f"{np.mean(condition(values)):.0%}\nn={values.size}")
    top = ax.secondary_xaxis("top")
    top.set_xticks(positions, texts)
    top.tick_params(labelsize=7, length=0)
    top.set_xlabel(title, fontsize=8)


def _legend_right_of(fig: Figure, ax: Axes) -> None:
    """Move seaborn's legend of ``ax`` (hue and style entries) to the right of the figure, clear of the data."""
    legend = ax.get_legend()
    if legend is None:  # seaborn draws none when there is nothing to tell apart
        return
    fig.legend(
        legend.legend_handles,
        [text.get_text() for text in legend.get_texts()],
        loc="outside right upper",
        fontsize=8,
        frameon=False,
    )
    legend.remove()


@contextlib.contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed numpy's global generator for the block and restore its state afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _slant_ticks(ax: Axes) -> None:
    """Slant the x tick labels when there are many or long ones (variant names, experiment above method)."""
    labels = ax.get_xticklabels()
    if len(labels) > 3 or any(len(label.get_text()) > 14 for label in labels):
        plt.setp(labels, rotation=25, ha="right", rotation_mode="anchor", fontsize=8)


def _require_columns(table: Any, columns: Sequence[str], name: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame; got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} is missing columns {missing}; it has {list(table.columns)}")


def _require_unique_rows(table: pd.DataFrame, key: list[str]) -> None:
    duplicated = table.duplicated(key)
    if duplicated.any():
        raise ValueError(
            f"table has more than one row for {table.loc[duplicated, key].iloc[0].to_dict()}; it must "
            f"hold one row per {', '.join(key)}"
        )


def _unique(series: pd.Series) -> list[Any]:
    """Distinct values in order of first appearance (the caller's order, not alphabetical)."""
    return list(pd.unique(series))


def _palette(keys: Sequence[Any]) -> dict[Any, str]:
    return {key: OKABE_ITO[k % len(OKABE_ITO)] for k, key in enumerate(keys)}


def _axes(axes: Axes | Sequence[Axes] | None, widths: Sequence[float], height: float) -> tuple[Figure, list[Axes]]:
    """The caller's Axes, one per panel width, and their figure; or a new one-row figure with panels
    ``widths`` inches wide and ``height`` high."""
    n = len(widths)
    if axes is None:
        fig, grid = plt.subplots(
            1, n, figsize=(sum(widths), height), width_ratios=widths, squeeze=False, layout="constrained"
        )
        return fig, list(grid[0])
    panels = [axes] if isinstance(axes, Axes) else list(np.ravel(np.asarray(axes, dtype=object)))
    if len(panels) != n or not all(isinstance(a, Axes) for a in panels):
        raise ValueError(
            f"axes must hold {n} matplotlib Axes for this figure; got {len(panels)} "
            f"({', '.join(type(a).__name__ for a in panels)})"
        )
    try:
        return panels[0].get_figure(root=True), panels
    except TypeError:  # matplotlib < 3.10
        return panels[0].figure, panels


def _fmt(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3g}"


# ---- helpers: images ------------------------------------------------------------------------
def _as_array(value: Any, name: str) -> np.ndarray:
    """A numeric numpy view of an array-like (torch tensors included)."""
    arr = as_numpy(value)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array; got dtype {arr.dtype}")
    return arr


def _validate_images(images: Any, name: str = "images") -> np.ndarray:
    return as_numpy(check_images(as_numpy(images), name, pixel_space=True, channels=(1, 3)))


def _validate_importance(value: Any, shape: tuple[int, ...], name: str, axes: str) -> np.ndarray:
    arr = _as_array(value, name)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {axes} = {shape}; got {arr.shape}")
    return check_importance(arr.reshape(-1, *shape[-2:]), name).reshape(shape)


def _validate_indices(indices: Sequence[int] | None, n: int) -> list[int]:
    chosen = list(range(n)) if indices is None else [int(i) for i in np.atleast_1d(np.asarray(indices))]
    if not chosen or any(not 0 <= i < n for i in chosen):
        raise ValueError(
            f"image_indices must be in [0, {n}) for {n} images, at least one, or None for all; got {chosen}"
        )
    return chosen


def _validate_fill(fill: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.zeros(shape) if fill is None else _as_array(fill, "fill_images")
    if arr.ndim == 0:
        if not 0.0 <= float(arr) <= 1.0:
            raise ValueError(f"fill_images as a number must be in [0, 1]; got {float(arr)}")
        return np.full(shape, float(arr))
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


def _hide_ticks(ax: Axes) -> None:
    ax.set(xticks=[], yticks=[])


def _polygon_parts(polygons: Sequence[Any], name: str) -> list[Polygon]:
    """The non-empty Polygons of a list of Polygons and MultiPolygons (or of one of them)."""
    parts = []
    for k, geometry in enumerate([polygons] if isinstance(polygons, (Polygon, MultiPolygon)) else polygons):
        if not isinstance(geometry, (Polygon, MultiPolygon)):
            raise TypeError(f"{name}[{k}] must be a shapely Polygon or MultiPolygon; got {type(geometry).__name__}")
        parts += [part for part in getattr(geometry, "geoms", [geometry]) if not part.is_empty]
    return parts


def _polygon_path(polygon: Polygon) -> Path:
    """A Path of the polygon and its holes: exterior counter-clockwise, holes clockwise, so matplotlib's
    non-zero fill rule leaves the holes open."""
    polygon = orient(polygon, sign=1.0)
    rings = [polygon.exterior, *polygon.interiors]
    return Path.make_compound_path(*[Path(np.asarray(ring.coords), closed=True) for ring in rings])
