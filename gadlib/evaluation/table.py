"""Per-image evaluation of GAD against the original map (docs/method.md): every region set of
:func:`build_region_sets` measured (complexity, RC) and occluded (RS) into a tidy table, one row per
image x region set, that :func:`summarize` turns into the numbers of metrics.json.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from gadlib.common.checks import as_numpy, check_images, check_importance
from gadlib.common.progress import tqdm
from gadlib.common.targets import class_indices
from gadlib.evaluation import baselines
from gadlib.evaluation.regions import EIGHT_CONNECTED, hull_complexity, hull_polygons, rasterize, relative_complexity
from gadlib.evaluation.sensitivity import OcclusionResult, occlusion_sensitivity
from gadlib.method.fusion import binarize

REGION_SETS = ("original", "gad", "rest", "random", "top_n", "random_subset")
CONTROL_SET = "gad_alpha0"  # GAD of the support models trained without distancing (optional)
# the columns of evaluate_maps: which image and map, the region set's measures, then its occlusion
TABLE_COLUMNS = ("image", "method", "target", "region_set", "n_pixels", "n_regions", "complexity", "hull_area")
TABLE_COLUMNS += ("area_pixels", "rc", "score", "occluded_score", "score_drop", "rs")
# region sets made from a map's pixels (hulls of groups) rather than from other sets' rasters
_PIXEL_SETS = ("original", "gad", "top_n", CONTROL_SET)


def significant_pixels(
    importance: torch.Tensor, threshold_mode: str = "quantile", q: float = 0.9, tau: float = 0.5, quiet: bool = False
) -> torch.Tensor:
    """(N, H, W) bool significant pixels of (N, H, W) non-negative ``importance``: pixels of positive
    importance that :func:`gadlib.method.fusion.binarize` keeps. ``quiet``: no warning for all-zero maps
    (an empty GAD map is GAD's documented outcome, not a fault)."""
    with warnings.catch_warnings():
        if quiet:
            warnings.filterwarnings("ignore", message=".*maps are all zero")
        return binarize(importance, mode=threshold_mode, q=q, tau=tau)


@dataclass(frozen=True)
class RegionSets:
    """The region sets of N images (:func:`build_region_sets`): ``masks``, name -> (N, H, W) bool raster
    occluded (``random_subset``: its first draw); ``subset_draws``, (R, N, H, W) bool, every random-subset
    draw; ``polygons``, N pairs (original, GAD hull polygons); ``n_pixels``, ``n_regions``, ``complexity``,
    ``hull_area``: name -> (N,) array, the columns of :func:`evaluate_maps` (random subset: median of draws)."""

    masks: dict
    subset_draws: np.ndarray
    polygons: list
    n_pixels: dict
    n_regions: dict
    complexity: dict
    hull_area: dict


def build_region_sets(
    images,
    original_importance,
    gad_importance,
    *,
    control_importance=None,
    threshold_mode: str = "quantile",
    q: float = 0.9,
    tau: float = 0.5,
    dilation: int = 1,
    min_pixels: int = 1,
    random_subset_draws: int = 20,
    rng=0,
    progress: bool = True,
    desc: str = "hulls",
) -> RegionSets:
    """The :class:`RegionSets` (docs/method.md) of (N, C, H, W) pixel-space ``images`` from the (N, H, W)
    per-pixel importance of the maps: ``original``, ``gad``, ``gad_alpha0`` (with ``control_importance``) and
    ``top_n`` (the original's n best pixels, n = GAD's :func:`significant_pixels` count by ``threshold_mode``,
    ``q``, ``tau``) as rasterised hulls of groups (``dilation``, ``min_pixels``:
    :func:`gadlib.evaluation.regions.group_pixels`); ``rest`` (original minus gad) and ``random``
    (:func:`gadlib.evaluation.baselines.on_object_blobs`) as rasters; ``random_subset``, hulls of n of the
    original's pixels, ``random_subset_draws`` times, drawn by ``rng`` image by image.
    """
    if rng is None:
        raise TypeError("rng must be a numpy.random.Generator or an int seed (not None), for reproducibility")
    if random_subset_draws < 1:
        raise ValueError(f"random_subset_draws must be >= 1; got {random_subset_draws}")
    rng = np.random.default_rng(rng)
    pixels = check_images(as_numpy(images), "images", pixel_space=True)
    n, _, h, w = pixels.shape
    importance = {"original": original_importance, "gad": gad_importance, CONTROL_SET: control_importance}
    significant = {}
    for name, value in importance.items():
        if value is not None:
            scores = torch.from_numpy(check_importance(value, f"{name}_importance", shape=(n, h, w)))
            significant[name] = significant_pixels(scores, threshold_mode, q, tau, quiet=name != "original").numpy()
    original_scores = check_importance(original_importance, "original_importance", shape=(n, h, w))
    names = [*REGION_SETS, *([CONTROL_SET] if CONTROL_SET in significant else [])]
    rasters = {name: np.zeros((n, h, w), dtype=bool) for name in names}
    subset_draws = np.zeros((random_subset_draws, n, h, w), dtype=bool)
    n_pixels = {name: np.zeros(n, dtype=np.int64) for name in names}
    n_regions = {name: np.zeros(n) for name in names}
    complexity = {name: np.zeros(n) for name in names}
    hull_area = {name: np.full(n, np.nan) for name in names}
    polygons = []

    def hulls(name: str, i: int, mask: np.ndarray) -> list:
        polys = hull_polygons(mask, dilation=dilation, min_pixels=min_pixels)
        measured = hull_complexity(polys, (h, w))
        rasters[name][i] = rasterize(polys, (h, w))
        n_pixels[name][i], n_regions[name][i] = int(mask.sum()), measured.n_regions
        complexity[name][i], hull_area[name][i] = measured.fraction, measured.area_pixels
        return polys

    for i in tqdm(range(n), desc=desc, disable=not progress):
        n_gad = int(significant["gad"][i].sum())
        masks = {name: significant[name][i] for name in significant}
        masks["top_n"] = baselines.top_n_mask(original_scores[i], n_gad)
        polygons.append(tuple(hulls(name, i, masks[name]) for name in _PIXEL_SETS if name in masks)[:2])
        rasters["rest"][i] = rasters["original"][i] & ~rasters["gad"][i]
        rasters["random"][i] = baselines.on_object_blobs(rasters["gad"][i], baselines.foreground(pixels[i]), rng)
        for name in ("rest", "random"):
            n_pixels[name][i] = int(rasters[name][i].sum())
            n_regions[name][i] = ndimage.label(rasters[name][i], structure=EIGHT_CONNECTED)[1]
            complexity[name][i] = n_pixels[name][i] / (h * w)
        draws = []
        for r in range(random_subset_draws):
            subset = baselines.random_subset_mask(significant["original"][i], n_gad, rng)
            polys = hull_polygons(subset, dilation=dilation, min_pixels=min_pixels)
            subset_draws[r, i] = rasterize(polys, (h, w))
            measured = hull_complexity(polys, (h, w))
            draws.append((measured.n_regions, measured.fraction, measured.area_pixels))
        n_pixels["random_subset"][i] = min(n_gad, int(significant["original"][i].sum()))
        n_regions["random_subset"][i], complexity["random_subset"][i], hull_area["random_subset"][i] = np.median(
            draws, axis=0
        )
    rasters["random_subset"] = subset_draws[0]
    return RegionSets(rasters, subset_draws, polygons, n_pixels, n_regions, complexity, hull_area)


def evaluate_maps(
    model: torch.nn.Module,
    images: torch.Tensor,
    targets,
    original_importance,
    gad_importance,
    *,
    method: str,
    control_importance=None,
    threshold_mode: str = "quantile",
    q: float = 0.9,
    tau: float = 0.5,
    dilation: int = 1,
    min_pixels: int = 1,
    fill: str = "black",
    other_fills: tuple[str, ...] = (),
    mean=None,
    blur_sigma: float = 2.0,
    score_mode: str = "logit",
    other=None,
    random_subset_draws: int = 20,
    rng=0,
    batch_size: int = 256,
    occlusion: bool = True,
    progress: bool = True,
    image_ids=None,
) -> pd.DataFrame:
    """Tidy per-image table of hull complexity, RC and occlusion sensitivity RS of every region set: a
    DataFrame, one row per image and region set (image-major, sets in :data:`REGION_SETS` order, then
    ``gad_alpha0``), of ``image``, ``method``, ``target``, ``region_set``; ``n_pixels`` (significant pixels;
    raster pixels for rest and random), ``n_regions``, ``complexity`` (area fraction, lower = simpler) and
    ``hull_area`` (NaN for rest and random) of :func:`build_region_sets`; ``area_pixels`` (occluded);
    ``rc`` (complexity over the original's; NaN for an empty original); ``score``, ``occluded_score``,
    ``score_drop``, ``rs`` (:class:`gadlib.evaluation.sensitivity.OcclusionResult`); ``rs_<fill>`` per fill.

    ``model`` takes pixel-space images on the device of ``images`` ((N, C, H, W) floats in [0, 1]);
    ``targets``: int or (N,) ints, the explained and scored class; ``original_importance``,
    ``gad_importance`` (and optionally ``control_importance``, region set ``gad_alpha0``): (N, H, W)
    non-negative per-pixel importance, tensors or arrays, e.g. :func:`gadlib.method.fusion.pixel_importance`
    of any maps (NaN counts as 0, warned); ``method``: the ``method`` column; ``threshold_mode``, ``q``,
    ``tau``, ``dilation``, ``min_pixels``, ``random_subset_draws``, ``rng``: :func:`build_region_sets`;
    ``fill`` of the score columns and ``other_fills`` (``rs_<fill>``), ``mean``, ``blur_sigma``,
    ``score_mode``, ``other``, ``batch_size``: :func:`gadlib.evaluation.sensitivity.occlusion_sensitivity`;
    ``occlusion=False``: no forward pass (NaN scores); ``image_ids``: (N,) for ``image`` (default 0..N-1).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from gadlib import evaluate_maps, pixel_importance, summarize
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    >>> images = torch.rand(2, 1, 8, 8)  # pixel space, in [0, 1]
    >>> maps = torch.randn(2, 1, 8, 8)  # any attribution maps, e.g. Captum's
    >>> original = pixel_importance(maps)  # (N, H, W) = (2, 8, 8)
    >>> gad = original * (original > original.flatten(1).quantile(0.97, dim=1)[:, None, None])  # a sparser map
    >>> table = evaluate_maps(model, images, 0, original, gad, method="my map", progress=False)
    >>> table.region_set.unique().tolist()
    ['original', 'gad', 'rest', 'random', 'top_n', 'random_subset']
    >>> bool((table[table.region_set == "gad"].rc < 1).all())  # the sparser map covers less than the original
    True
    >>> sorted(summarize(table)["my map"])[:4]
    ['complexity_gad_mean', 'complexity_original_mean', 'gad_empty', 'n_images']
    """
    check_images(images, pixel_space=True, require_tensor=True)
    n, _, h, w = images.shape
    target_t = class_indices(targets, n, device="cpu")
    ids = np.arange(n) if image_ids is None else np.asarray(image_ids)
    if ids.shape != (n,):
        raise ValueError(f"image_ids must have shape ({n},); got {ids.shape}")
    fills = list(dict.fromkeys((fill, *other_fills)))
    region_options = {"control_importance": control_importance, "threshold_mode": threshold_mode, "q": q, "tau": tau}
    region_options |= {"dilation": dilation, "min_pixels": min_pixels, "random_subset_draws": random_subset_draws}
    region_options |= {"rng": rng, "progress": progress, "desc": f"hulls {method}"}
    sets = build_region_sets(images, original_importance, gad_importance, **region_options)
    names = list(sets.masks)
    rc = {"gad": relative_complexity(sets.complexity["gad"], sets.complexity["original"])}  # warns: empty originals
    with warnings.catch_warnings():  # the same images again: one warning is enough
        warnings.simplefilter("ignore")
        rc |= {name: relative_complexity(sets.complexity[name], sets.complexity["original"]) for name in names}
    nan = np.full(n, np.nan)
    measured = {fill_name: {name: {} for name in names} for fill_name in fills}
    if occlusion:
        occluded = {name: torch.from_numpy(sets.masks[name]) for name in names if name != "random_subset"}
        occluded |= {f"random_subset_{r}": torch.from_numpy(draw) for r, draw in enumerate(sets.subset_draws)}
        scoring = {"score_mode": score_mode, "other": other, "mean": mean, "blur_sigma": blur_sigma}
        scoring |= {"batch_size": batch_size, "progress": progress}
        for fill_name in fills:
            with warnings.catch_warnings():  # empty region sets (an empty GAD map) give NaN, counted later
                warnings.filterwarnings("ignore", message="RS undefined")
                results = occlusion_sensitivity(model, images, occluded, target_t, fill=fill_name, **scoring)
            draws = [results[f"random_subset_{r}"] for r in range(len(sets.subset_draws))]
            results["random_subset"] = OcclusionResult(
                **{key: np.median([getattr(d, key) for d in draws], axis=0) for key in vars(draws[0])}
            )
            measured[fill_name] = {name: vars(results[name]) for name in names}
    frames = []
    for name in names:
        primary = measured[fills[0]][name]
        frame = {"image": ids, "method": method, "target": target_t.numpy(), "region_set": name}
        frame |= {key: getattr(sets, key)[name] for key in ("n_pixels", "n_regions", "complexity", "hull_area")}
        if name == "random_subset":  # the median over the draws, as its other measures
            frame["area_pixels"] = np.median(sets.subset_draws.sum(axis=(2, 3)), axis=0)
        else:
            frame["area_pixels"] = sets.masks[name].sum(axis=(1, 2)).astype(np.int64)
        frame["rc"] = rc[name]
        frame |= {key: primary.get(key, nan) for key in ("score", "occluded_score", "score_drop", "rs")}
        frame |= {f"rs_{f}": measured[f][name].get("rs", nan) for f in fills} | {"_order": np.arange(n)}
        frames.append(pd.DataFrame(frame))
    table = pd.concat(frames, ignore_index=True)
    table["region_set"] = pd.Categorical(table["region_set"], categories=names)
    table = table.sort_values(["_order", "region_set"], kind="stable").drop(columns="_order")
    table["region_set"] = table["region_set"].astype(str)
    return table.reset_index(drop=True)[[*TABLE_COLUMNS, *(f"rs_{f}" for f in fills)]]


def _stats(values: np.ndarray, prefix: str) -> dict:
    finite = values[np.isfinite(values)]
    return {
        f"{prefix}_mean": float(finite.mean()) if finite.size else float("nan"),
        f"{prefix}_median": float(np.median(finite)) if finite.size else float("nan"),
        f"{prefix}_std": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
        f"{prefix}_q25": float(np.quantile(finite, 0.25)) if finite.size else float("nan"),
        f"{prefix}_q75": float(np.quantile(finite, 0.75)) if finite.size else float("nan"),
        f"n_{prefix}_nan": int(values.size - finite.size),
    }


def _fraction(condition: np.ndarray, valid: np.ndarray) -> float:
    return float(condition[valid].mean()) if valid.any() else float("nan")


def summarize(table: pd.DataFrame) -> dict:
    """Per method of :func:`evaluate_maps` tables, JSON-ready numbers: ``n_images``; mean, median, std
    (ddof 1), q25, q75 and NaN count of RC (``rc_*``) and of each region set's RS (``rs_<set>_*``) over the
    finite values; ``rc_below_1``; ``gad_empty`` (RC = 0) and ``rc_median_nonempty``; ``rs_gad_beats_rest``,
    ``rs_gad_beats_random`` over the ``n_rs_gad_*_pairs`` images where both are finite; the mean
    ``complexity_original_mean``, ``complexity_gad_mean``. A statistic without a finite value is NaN."""
    required = {"image", "method", "region_set", "rc", "rs", "complexity"}
    if missing := required - set(table.columns):
        raise ValueError(f"table lacks columns {sorted(missing)}; pass the output of evaluate_maps")
    dup = table.duplicated(["method", "image", "region_set"])
    if dup.any():
        first = table.loc[dup, ["method", "image", "region_set"]].iloc[0].tolist()
        raise ValueError(
            f"table has {int(dup.sum())} duplicate (method, image, region_set) rows, e.g. {first}; "
            f"give each image a distinct id (evaluate_maps(image_ids=...)) or summarise separately"
        )
    summary = {}
    for method, group in table.groupby("method", sort=True):
        rs = group.pivot(index="image", columns="region_set", values="rs").reindex(columns=list(REGION_SETS))
        comp = group.pivot(index="image", columns="region_set", values="complexity").reindex(columns=list(REGION_SETS))
        rc_rows = group[group["region_set"] == "gad"].set_index("image")["rc"]
        rc = rc_rows.reindex(rs.index).to_numpy(dtype=np.float64)
        out: dict = {"n_images": int(rs.shape[0])}
        out.update(_stats(rc, "rc"))
        out["rc_below_1"] = _fraction(rc < 1, np.isfinite(rc))
        # An empty GAD map has RC = 0 and counts as RC < 1: say how often that happened.
        gad_complexity = comp["gad"].to_numpy(dtype=np.float64)
        out["gad_empty"] = _fraction(gad_complexity == 0, np.isfinite(gad_complexity))
        nonempty = rc[(gad_complexity > 0) & np.isfinite(rc)]
        out["rc_median_nonempty"] = float(np.median(nonempty)) if nonempty.size else float("nan")
        for name in REGION_SETS:
            out.update(_stats(rs[name].to_numpy(dtype=np.float64), f"rs_{name}"))
        gad = rs["gad"].to_numpy(dtype=np.float64)
        for other in ("rest", "random"):
            values = rs[other].to_numpy(dtype=np.float64)
            both = np.isfinite(gad) & np.isfinite(values)
            out[f"rs_gad_beats_{other}"] = _fraction(gad > values, both)
            out[f"n_rs_gad_{other}_pairs"] = int(both.sum())
        for name in ("original", "gad"):
            v = comp[name].to_numpy(dtype=np.float64)
            v = v[np.isfinite(v)]
            out[f"complexity_{name}_mean"] = float(v.mean()) if v.size else float("nan")
        summary[str(method)] = out
    return summary
