"""Figures of the GAD study: attribution grids, hulls, occlusion examples and metric summaries.

Each ``plot_*`` draws arrays or DataFrames (left unchanged) on the given ``ax`` / ``axes`` (default: a new
figure) and returns the Figure; only :func:`save_figure` writes files. Images are (C, H, W) floats in
[0, 1], C in {1, 3}. Summary figures take :func:`gadlib.evaluation.table.evaluate_maps` tables with an
``experiment`` column and show each group's box and jittered points, NaN counted under the x label.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
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
from gadlib.common.checks import as_numpy, check_images, check_importance, check_mask

# Okabe & Ito (2008): safe for deuteranopia, protanopia and tritanopia.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
REGION_SET_COLORS = {
    "original": "#E69F00",
    "gad": "#0072B2",
    "rest": "#D55E00",
    "random": "#999999",
    "top_n": "#009E73",
    "random_subset": "#F0E442",
    "gad_alpha0": "#CC79A7",
}
IMPORTANCE_CMAP = "viridis"  # perceptually uniform, colour-blind safe, readable in greyscale
PNG_DPI = 150
BOX_WIDTH = 0.8  # of each box group (seaborn's default); the per-box annotations are placed with it
_JITTER_SEED = 0  # strip-plot jitter is display only; a fixed seed keeps figures reproducible

TIDY_COLUMNS = ("experiment", "image", "method", "region_set")
FIDELITY_COLUMNS = ("experiment", "model", "alpha", "accuracy", "agreement", "margin", "target_margin", "final_loss")


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
    """Each (N, C, H, W) image next to its importance maps for every model and the GAD map: a row per (image,
    method), images outermost, of the image, the M maps and GAD on one colour scale from 0 with its colour
    bar (rows * (M + 2) image axes, then rows colour-bar axes).

    ``importance_by_method``: method -> (M, N, H, W) non-negative maps, model 0 the original;
    ``gad_by_method``: the same methods -> (N, H, W) GAD maps; ``model_labels``: M column titles;
    ``clip_percentile`` in (0, 100]: the colour scale's top, a percentile of the model maps (so a few extreme
    pixels do not wash out the rest), over the shown images with ``share_across_images``, else per row.
    """
    imgs = _validate_images(images)
    n_images, _, height, width = imgs.shape
    labels, methods = [str(label) for label in model_labels], list(importance_by_method)
    if not labels or not methods:
        raise ValueError("model_labels and importance_by_method must not be empty: one label per model, original first")
    if not 0.0 < clip_percentile <= 100.0:
        raise ValueError(f"clip_percentile must be in (0, 100]; got {clip_percentile}")
    if set(methods) != set(gad_by_method):
        raise ValueError(
            f"importance_by_method and gad_by_method need the same methods; got {methods}, {list(gad_by_method)}"
        )
    shape = (len(labels), n_images, height, width)
    maps = {m: _validate_maps(importance_by_method[m], shape, f"importance_by_method[{m!r}]") for m in methods}
    gads = {m: check_importance(gad_by_method[m], f"gad_by_method[{m!r}]", shape=shape[1:]) for m in methods}
    indices = _validate_indices(image_indices, n_images)
    n_cols, rows = len(labels) + 2, [(i, method) for i in indices for method in methods]
    fig, grid = _grid(len(rows), n_cols, (1.7 * n_cols + 1.2, 1.7 * len(rows) + 0.6))
    for row_axes, (i, method) in zip(grid, rows, strict=True):
        shown = maps[method][:, indices] if share_across_images else maps[method][:, i]
        vmax = float(np.percentile(shown, clip_percentile)) or float(shown.max()) or 1.0  # 1 for all-zero maps
        _show_image(row_axes[0], imgs[i])
        row_axes[0].set_ylabel(f"image {i}\n{method}")
        for ax, panel in zip(row_axes[1:], [*maps[method][:, i], gads[method][i]], strict=True):
            mappable = ax.imshow(panel, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
            ax.set(xticks=[], yticks=[])
        colorbar = fig.colorbar(mappable, ax=list(row_axes[1:]), shrink=0.9, pad=0.01)
        colorbar.set_label(f"{method} importance", fontsize=8)
        colorbar.ax.tick_params(labelsize=7)
    for ax, title in zip(grid[0], ["image", *labels, "GAD"], strict=True):
        ax.set_title(title, fontsize=9)
    scale = f"shared scale {'per method' if share_across_images else 'per row'}, clipped at the {clip_percentile:g}th"
    fig.suptitle(f"Importance maps: original, support models and GAD ({scale} percentile)", fontsize=10)
    return fig


def plot_attribution(
    attribution: Any,
    image: Any = None,
    ax: Axes | None = None,
    title: str | None = None,
    cmap: str = IMPORTANCE_CMAP,
    alpha: float = 0.6,
) -> Figure:
    """One (C, H, W) or (H, W) attribution map as a heat map of its importance (sum over channels of
    |values|; colour bar from 0 to its maximum), with opacity ``alpha`` over the (C, H, W) ``image`` if given:
    Captum's ``visualize_image_attr(..., "blended_heat_map", sign="absolute_value")``, except that an
    all-zero (empty GAD) map is drawn, titled "empty", where Captum fails.
    """
    values = as_numpy(attribution).astype(np.float64)
    if values.ndim not in (2, 3):
        raise ValueError(f"attribution must be one (C, H, W) or (H, W) map; got shape {values.shape}")
    importance = np.nan_to_num(np.abs(values) if values.ndim == 2 else np.abs(values).sum(axis=0))
    fig, (ax,) = panel_axes(ax, [3.4], 3.0)
    if image is not None:
        img = as_numpy(image)
        if img.ndim != 3 or img.shape[1:] != importance.shape:
            raise ValueError(f"image must be one (C, H, W) image of the map's size {importance.shape}; got {img.shape}")
        _show_image(ax, _validate_images(img[None], name="image")[0])
    empty = not importance.any()
    over_image = image is not None
    shown = np.ma.masked_equal(importance, 0.0) if over_image else importance  # zero: the image shows through
    vmax = 1.0 if empty else float(importance.max())
    mappable = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=vmax, alpha=alpha if over_image else 1.0)
    ax.set(xticks=[], yticks=[])
    fig.colorbar(mappable, ax=ax, shrink=0.85).ax.tick_params(labelsize=7)
    label = "attribution" if title is None else title
    ax.set_title(f"{label} (empty: no pixel kept)" if empty else label, fontsize=9)
    return fig


def plot_hulls(
    image: Any,
    original_polygons: Sequence[Any],
    gad_polygons: Sequence[Any],
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """The convex-hull regions of the original map (dashed) and of the GAD map (solid) over the (C, H, W)
    image: shapely (Multi)Polygons in pixel-edge coordinates (:mod:`gadlib.evaluation.regions`), holes open;
    the legend counts the regions."""
    img = as_numpy(image)
    if img.ndim != 3:
        raise ValueError(f"image must be one (C, H, W) image; got {img.shape}")
    img = _validate_images(img[None], name="image")[0]
    _, height, width = img.shape
    fig, (ax,) = panel_axes(ax, [4.2], 4.2)
    _show_image(ax, img, extent=(0, width, height, 0))
    halo = [patheffects.withStroke(linewidth=3.0, foreground="white")]  # outlines stay visible on any image
    handles = []
    for name, polygons, style in (("original", original_polygons, "--"), ("gad", gad_polygons, "-")):
        color, paths = REGION_SET_COLORS[name], _region_paths(polygons, f"{name}_polygons")
        line = {"linestyle": style, "linewidth": 1.6}
        for path in paths:
            ax.add_patch(PathPatch(path, facecolor=to_rgba(color, 0.18), edgecolor=color, path_effects=halo, **line))
        label = f"{'GAD' if name == 'gad' else name} ({len(paths)} region{'' if len(paths) == 1 else 's'})"
        handles.append(Line2D([], [], color=color, label=label, **line))
    ax.set(xlim=(0, width), ylim=(height, 0))
    # one entry per line, below the image: side-by-side panels never overlap their legends
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=8, frameon=False)
    ax.set_title("Regions: original vs GAD" if title is None else title, fontsize=10)
    return fig


def plot_occlusion_examples(
    images: Any,
    masks_by_set: Mapping[str, Any],
    drops: Mapping[str, Any],
    fill_images: Any = None,
    image_indices: Sequence[int] | None = None,
) -> Figure:
    """A row per (N, C, H, W) image: the image, then each region set of ``masks_by_set`` (name -> (N, H, W)
    bool, True = occluded) occluded by ``fill_images`` (None = black, a number in [0, 1] or (N, C, H, W)
    images) and outlined, titled by its (N,) score ``drops`` and RS."""
    imgs = _validate_images(images)
    n_images, names = imgs.shape[0], list(masks_by_set)
    if not names or set(names) != set(drops):
        raise ValueError(f"masks_by_set and drops must name the same region sets; got {names} and {list(drops)}")
    shape = (n_images, *imgs.shape[2:])
    masks = {name: check_mask(masks_by_set[name], f"masks_by_set[{name!r}]", shape=shape) for name in names}
    drop_values = {name: as_numpy(drops[name]).astype(float) for name in names}
    for name, values in drop_values.items():
        if values.shape != (n_images,):
            raise ValueError(f"drops[{name!r}] must have shape (N,) = ({n_images},); got {values.shape}")
    fill = np.zeros(()) if fill_images is None else as_numpy(fill_images).astype(float)  # a number or images
    if fill.ndim and fill.shape != imgs.shape:
        raise ValueError(f"fill_images must be a number or have shape (N, C, H, W) = {imgs.shape}; got {fill.shape}")
    fill = _validate_images(np.broadcast_to(fill, imgs.shape), name="fill_images")
    indices = _validate_indices(image_indices, n_images)
    fig, grid = _grid(len(indices), 1 + len(names), (2.1 * (1 + len(names)), 2.3 * len(indices) + 0.5))
    for row_axes, i in zip(grid, indices, strict=True):
        _show_image(row_axes[0], imgs[i])
        row_axes[0].set_title(f"image {i}", fontsize=9)
        for ax, name in zip(row_axes[1:], names, strict=True):
            mask, drop = masks[name][i], drop_values[name][i]
            area = int(mask.sum())
            _show_image(ax, np.where(mask[None], fill[i], imgs[i]))
            if 0 < area < mask.size:  # outline the occluded set; a dark fill can hide it
                ax.contour(mask, levels=[0.5], linewidths=1.0, colors=REGION_SET_COLORS.get(name, OKABE_ITO[6]))
            rs = _fmt(drop / area if area else np.nan)
            ax.set_title(f"{name}: {area} px\ndrop {_fmt(drop)} · RS {rs}", fontsize=8)
    fig.suptitle("Occlusion of region sets (drop = score before − after; RS = drop per pixel)", fontsize=10)
    return fig


def plot_rc_distributions(table: pd.DataFrame, ax: Axes | None = None, log_scale: bool | None = None) -> Figure:
    """RC (the tidy table's ``rc`` of its ``gad`` rows), a box per method and experiment with, above it, its
    share of images with RC < 1 and their number; ``log_scale`` default: when all RC > 0 span over 20x."""
    check_table(table, (*TIDY_COLUMNS, "rc"), "table")
    rows = table[table["region_set"] == "gad"]
    if rows.empty:
        raise ValueError("table has no rows with region_set == 'gad'; RC is read from those rows")
    rows = rows.assign(rc=pd.to_numeric(rows["rc"], errors="coerce"))
    if log_scale is None:
        log_scale = value_spread(rows["rc"]) > 20
    elif log_scale and rows["rc"].min() <= 0:
        raise ValueError(f"log_scale=True but RC has values <= 0 (min {rows['rc'].min():g}); use log_scale=False")
    fig, (ax,) = panel_axes(ax, [max(5.0, 0.9 * rows["method"].nunique() * rows["experiment"].nunique() + 2.5)], 4.2)
    ax.set(xlabel="attribution method", ylabel="RC = complexity(GAD) / complexity(original)")
    ax.set_title("Relative complexity of GAD regions (lower = smaller area)", fontsize=10)
    box_strip(ax, rows, "method", "rc", "experiment", nan="NaN RC", share=("<", 1.0, "share of images with RC < 1"))
    if log_scale:
        ax.set_yscale("log")
    return fig


def plot_rs_comparison(
    table: pd.DataFrame,
    axes: Axes | Sequence[Axes] | None = None,
    paired: bool = True,
    region_sets: Sequence[str] = ("gad", "rest", "random"),
) -> Figure:
    """RS (the tidy table's ``rs``) of the ``region_sets`` present, a box group per method (and experiment);
    with ``paired``, a second panel of the per-image RS(gad) − RS(rest) with, above each box, its share of
    images with RS(gad) > RS(rest) and their number."""
    check_table(table, (*TIDY_COLUMNS, "rs"), "table", unique=True)
    present = set(table["region_set"])
    sets = [name for name in region_sets if name in present]
    if not sets:
        raise ValueError(f"table has none of the region sets {list(region_sets)}; found {sorted(present)}")
    if paired and not {"gad", "rest"} <= present:
        raise ValueError(f"paired=True needs 'gad' and 'rest' rows; found {sorted(present)}; pass paired=False")
    group = table["method"].astype(str)
    if table["experiment"].nunique() > 1:
        group = table["experiment"].astype(str) + "\n" + group
    data = table.assign(rs=pd.to_numeric(table["rs"], errors="coerce"), group=group)
    rows = data[data["region_set"].isin(sets)]
    groups = list(pd.unique(rows["group"]))
    fig, panels = panel_axes(axes, [max(5.0, 0.6 * len(groups) + 2.0)] * (2 if paired else 1), 4.2)
    panels[0].set(xlabel="attribution method", ylabel="RS = score drop per occluded pixel")
    panels[0].set_title("Occlusion sensitivity by region set", fontsize=10)
    colors = {name: REGION_SET_COLORS.get(name, OKABE_ITO[2]) for name in sets}
    box_strip(panels[0], rows, "group", "rs", "region_set", colors=colors, legend=True, nan="NaN RS")
    if paired:
        wide = data.pivot(index=["group", "experiment", "image", "method"], columns="region_set", values="rs")
        diffs = (wide["gad"] - wide["rest"]).rename("diff").reset_index()
        panels[1].set(xlabel="attribution method", ylabel="RS(gad) − RS(rest), per image")
        panels[1].set_title("Paired difference (> 0: GAD regions more sensitive)", fontsize=10)
        share = (">", 0.0, "share of images with RS(gad) > RS(rest)")
        color = REGION_SET_COLORS["gad"]
        box_strip(
            panels[1], diffs, "group", "diff", order=groups, colors=color, nan="images without both RS", share=share
        )
    return fig


def plot_support_fidelity(fidelity: pd.DataFrame, axes: Sequence[Axes] | None = None) -> Figure:
    """How the support models keep the original's behaviour as α grows, from :data:`FIDELITY_COLUMNS`
    (:func:`gadlib.method.support.support_fidelity` rows): accuracy, agreement, achieved (solid) vs target
    (dashed) margin and final loss, a colour per experiment (several support sets: mean and range)."""
    check_table(fidelity, FIDELITY_COLUMNS, "fidelity")
    fig, panels = panel_axes(axes, [3.6] * 4, 3.6)
    data = fidelity.astype({column: float for column in FIDELITY_COLUMNS[2:]})
    supports = data[data["model"] != 0]
    line = line_kws("alpha", "experiment", data, errorbar=("pi", 100))
    sns.lineplot(data, y="accuracy", ax=panels[0], legend=False, **line)
    sns.lineplot(data, y="agreement", ax=panels[1], legend=False, **line)
    solid_and_dashed(panels[2], data, {"margin": "achieved", "target_margin": "target"}, "margin", line)
    sns.lineplot(supports, y="final_loss", ax=panels[3], legend=False, **line)
    if value_spread(supports["final_loss"]) > 20:
        panels[3].set_yscale("log")
    panels[0].set(ylabel="test accuracy", title="Accuracy")
    panels[1].set(ylabel="argmax agreement with original", title="Agreement with the original")
    panels[2].set(ylabel="mean margin between the pair's logits", title="Margin: achieved vs target")
    panels[3].set(ylabel="final MSE loss", title="Support-model training loss")
    finish_line_panels(fig, panels, "α (schedule value; 0 = original)")
    for ax in panels[:2]:
        ax.set_ylim(top=1.02)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write ``fig`` to ``path`` (ending in ``.png``) as a 150-dpi PNG atomically, creating the folders,
    then close it."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure; got {type(fig).__name__}")
    if not os.fspath(path).lower().endswith(".png"):
        raise ValueError(f"save_figure writes PNG; the path must end in .png, got {os.fspath(path)!r}")
    try:
        with atomic_path(path) as tmp:  # the temporary name ends in .tmp: give matplotlib the format
            fig.savefig(tmp, format="png", dpi=PNG_DPI)
    finally:
        plt.close(fig)


# ---- building blocks of the summary figures (tools/open_questions.py draws with them too) ----
def box_strip(
    ax: Axes,
    data: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    *,
    nan: str,
    order: Sequence[Any] | None = None,
    colors: Mapping[Any, str] | str | None = None,
    legend: bool | None = None,
    share: tuple[str, float, str] | None = None,
) -> None:
    """A box per (x, hue) level of ``data``, without fliers: every value is drawn over it as a jittered point.
    ``nan`` names the NaN ``y`` values counted under the x label; ``order``: the ``x`` levels; ``colors``:
    hue level -> colour, or the one colour without hue; ``legend``: right of the axes (default with several
    hue levels); ``share``: (op "<" or ">", threshold, label), a dashed line at the threshold and, above
    each box, the share of its values op threshold and their number (default: a line at 0)."""
    order = list(pd.unique(data[x]) if order is None else order)
    if hue:
        colors = dict(colors or palette(pd.unique(data[hue])))
    n_missing, data = int(data[y].isna().sum()), data.dropna(subset=[y])
    hue_kws = {"hue": hue, "hue_order": list(colors), "palette": colors} if hue else {"color": colors}
    common = {"data": data, "x": x, "y": y, "order": order, "ax": ax, **hue_kws}
    legend = bool(hue) and (len(colors) > 1 if legend is None else legend)
    box_style = {"width": BOX_WIDTH, "saturation": 1.0, "showfliers": False, "boxprops": {"alpha": 0.4}}
    with warnings.catch_warnings():  # seaborn 0.13 passes Axes.bxp the `vert` that matplotlib 3.11 deprecates
        warnings.filterwarnings("ignore", "vert: bool was deprecated", MatplotlibDeprecationWarning)
        sns.boxplot(**common, **box_style, medianprops={"color": "black", "linewidth": 1.5}, legend=legend)
    state = np.random.get_state()  # seaborn's strip jitter draws from numpy's global generator
    np.random.seed(_JITTER_SEED)
    try:
        sns.stripplot(**common, dodge=bool(hue), size=3, alpha=0.7, linewidth=0, legend=False)
    finally:
        np.random.set_state(state)
    if legend:
        legend_title = {"title": hue.replace("_", " "), "title_fontsize": 8}
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), fontsize=8, frameon=False, **legend_title)
    if share is None:
        ax.axhline(0.0, color="black", linewidth=0.8, zorder=0)
    else:
        op, threshold, share_label = share
        ax.axhline(threshold, color="black", linestyle="--", linewidth=1.0, zorder=0)
        levels = list(colors) if hue else [None]
        positions, texts = [], []
        for g, level in enumerate(order):
            for h, hue_level in enumerate(levels):
                values = data.loc[(data[x] == level) & ((data[hue] == hue_level) if hue else True), y].to_numpy(float)
                if values.size:  # seaborn dodges the boxes of a group by their hue level's index, as here
                    positions.append(g - BOX_WIDTH / 2 + BOX_WIDTH / len(levels) * (h + 0.5))
                    shares = values < threshold if op == "<" else values > threshold
                    texts.append(f"{shares.mean():.0%}\nn={values.size}")
        top = ax.secondary_xaxis("top")
        top.set_xticks(positions, texts)
        top.tick_params(labelsize=7, length=0)
        top.set_xlabel(share_label, fontsize=8)
    if n_missing:
        ax.set_xlabel(f"{ax.get_xlabel()}\n({n_missing} {nan} not shown)")
    slant_ticks(ax)


def line_kws(x: str, hue: str, data: pd.DataFrame, **kws: Any) -> dict[str, Any]:
    """seaborn.lineplot arguments shared by the panels of a figure: one Okabe-Ito colour per hue level."""
    levels = list(pd.unique(data[hue]))
    return {"x": x, "hue": hue, "hue_order": levels, "palette": palette(levels), "marker": "o", **kws}


def solid_and_dashed(ax: Axes, data: pd.DataFrame, columns: dict[str, str], name: str, line: dict[str, Any]) -> None:
    """Lines of two columns of ``data`` (column -> label) told apart by style: the first solid, the second dashed."""
    long = data.melt([line["x"], line["hue"]], list(columns), var_name=name, value_name="value")
    sns.lineplot(long.replace({name: columns}), y="value", style=name, ax=ax, **line)


def finish_line_panels(fig: Figure, panels: list[Axes], xlabel: str) -> None:
    """``xlabel``, a grid and 10-point titles on each panel; seaborn's legends moved right of the figure."""
    for ax in panels:
        ax.set_xlabel(xlabel)
        ax.title.set_fontsize(10)
        ax.grid(True, alpha=0.3)
        legend = ax.get_legend()
        if legend is not None:
            labels = [text.get_text() for text in legend.get_texts()]
            fig.legend(legend.legend_handles, labels, loc="outside right upper", fontsize=8, frameon=False)
            legend.remove()


def slant_ticks(ax: Axes) -> None:
    """Slant the x tick labels when there are many or long ones (variant names, experiment above method)."""
    labels = ax.get_xticklabels()
    if len(labels) > 3 or any(len(label.get_text()) > 14 for label in labels):
        plt.setp(labels, rotation=25, ha="right", rotation_mode="anchor", fontsize=8)


def value_spread(values: Any) -> float:
    """max / min of the non-NaN values; 0 when there are none or one is <= 0 (no log axis then)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(values.max() / values.min()) if values.size and values.min() > 0 else 0.0


def check_table(table: Any, columns: Sequence[str], name: str, unique: bool = False) -> None:
    """Raise unless ``table`` is a non-empty DataFrame with ``columns`` (if ``unique``: one row per TIDY_COLUMNS)."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame; got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing or table.empty:
        raise ValueError(
            f"{name} is empty or is missing columns {missing}; it has {len(table)} rows, {list(table.columns)}"
        )
    if unique and (duplicated := table.duplicated(list(TIDY_COLUMNS))).any():
        first = table.loc[duplicated, list(TIDY_COLUMNS)].iloc[0].to_dict()
        raise ValueError(f"{name} has more than one row for {first}; it must hold one per {', '.join(TIDY_COLUMNS)}")


def palette(keys: Sequence[Any]) -> dict[Any, str]:
    return {key: OKABE_ITO[k % len(OKABE_ITO)] for k, key in enumerate(keys)}


def panel_axes(axes: Axes | Sequence[Axes] | None, widths: Sequence[float], height: float) -> tuple[Figure, list[Axes]]:
    """The caller's Axes (one per panel) and their figure, or a new row of panels ``widths`` x ``height`` inches."""
    if axes is None:
        fig, grid = _grid(1, len(widths), (sum(widths), height), width_ratios=widths)
        return fig, list(grid[0])
    panels = [axes] if isinstance(axes, Axes) else list(np.ravel(np.asarray(axes, dtype=object)))
    if len(panels) != len(widths) or not all(isinstance(a, Axes) for a in panels):
        raise ValueError(f"axes must hold {len(widths)} matplotlib Axes for this figure; got {axes!r}")
    try:
        return panels[0].get_figure(root=True), panels
    except TypeError:  # matplotlib < 3.10
        return panels[0].figure, panels


def _grid(n_rows: int, n_cols: int, figsize: tuple[float, float], **kws: Any) -> tuple[Figure, np.ndarray]:
    return plt.subplots(n_rows, n_cols, figsize=figsize, squeeze=False, layout="constrained", **kws)


def _fmt(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3g}"


def _validate_images(images: Any, name: str = "images") -> np.ndarray:
    return check_images(as_numpy(images), name, pixel_space=True, channels=(1, 3))


def _validate_maps(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = as_numpy(value)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape (M, N, H, W) = {shape}; got {arr.shape}")
    return check_importance(arr.reshape(-1, *shape[2:]), name).reshape(shape)


def _validate_indices(indices: Sequence[int] | None, n: int) -> list[int]:
    chosen = list(range(n)) if indices is None else [int(i) for i in np.atleast_1d(indices)]
    if not chosen or any(not 0 <= i < n for i in chosen):
        raise ValueError(f"image_indices must be in [0, {n}), at least one, or None for all; got {chosen}")
    return chosen


def _show_image(ax: Axes, image: np.ndarray, extent: tuple[float, ...] | None = None) -> None:
    """Show a (C, H, W) pixel-space image without ticks: grey for C = 1, RGB for C = 3."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", extent=extent)
    else:
        ax.imshow(np.clip(np.moveaxis(image, 0, -1), 0.0, 1.0), interpolation="nearest", extent=extent)
    ax.set(xticks=[], yticks=[])


def _region_paths(polygons: Sequence[Any], name: str) -> list[Path]:
    """A Path per non-empty Polygon of a list of Polygons and MultiPolygons (or of one of them): exterior
    counter-clockwise, holes clockwise, so matplotlib's non-zero fill rule leaves the holes open."""
    paths = []
    for k, geometry in enumerate([polygons] if isinstance(polygons, (Polygon, MultiPolygon)) else polygons):
        if not isinstance(geometry, (Polygon, MultiPolygon)):
            raise TypeError(f"{name}[{k}] must be a shapely Polygon or MultiPolygon; got {type(geometry).__name__}")
        for part in getattr(geometry, "geoms", [geometry]):
            if not part.is_empty:
                oriented = orient(part, sign=1.0)
                rings = [oriented.exterior, *oriented.interiors]
                paths.append(Path.make_compound_path(*[Path(np.asarray(ring.coords), closed=True) for ring in rings]))
    return paths
