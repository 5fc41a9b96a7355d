"""Per-image evaluation of GAD against the original map: relative complexity RC and sensitivity RS.

For each image, four region sets are built and occluded:

- ``original``: the rasterised union of the convex hulls of the original map's significant pixels;
- ``gad``: the same for the GAD map;
- ``rest``: ``original`` minus ``gad``, pixelwise (the original's regions that GAD dropped);
- ``random``: a random cyclic shift of ``gad`` (same area), the control.

The result is a tidy table (one row per image x region set) that :func:`summarize` turns into the
JSON-ready numbers of metrics.json.
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
TABLE_COLUMNS = (
    "image",
    "method",
    "target",
    "region_set",
    "n_pixels",
    "n_regions",
    "complexity",
    "hull_area",
    "area_pixels",
    "rc",
    "score",
    "occluded_score",
    "score_drop",
    "rs",
)
# region sets made from a map's pixels (hulls of groups) rather than from other sets' rasters
_PIXEL_SETS = ("original", "gad", "top_n", CONTROL_SET)


def significant_pixels(
    importance: torch.Tensor, threshold_mode: str = "quantile", q: float = 0.9, tau: float = 0.5, quiet: bool = False
) -> torch.Tensor:
    """Significant pixels of each map: :func:`gadlib.method.fusion.binarize`, minus zero-importance pixels.

    A GAD map is zero outside its consistency mask, usually on more than (1 - q) of the image, so its
    q-quantile is 0 and ``binarize`` alone would keep every pixel. A pixel of importance 0 is never
    significant, so it is removed here; for a map with a positive threshold nothing changes.

    Parameters
    ----------
    importance : (N, H, W) non-negative tensor
    threshold_mode, q, tau : as in :func:`gadlib.method.fusion.binarize`
    quiet : no warning for all-zero maps (an empty GAD map is GAD's documented outcome, not a fault)

    Returns
    -------
    (N, H, W) bool tensor.
    """
    with warnings.catch_warnings():
        if quiet:
            warnings.filterwarnings("ignore", message=".*maps are all zero")
        return binarize(importance, mode=threshold_mode, q=q, tau=tau) & (importance > 0)


@dataclass(frozen=True)
class RegionSets:
    """The region sets of N images and their statistics (see :func:`build_region_sets`).

    Attributes
    ----------
    masks : name -> (N, H, W) bool array, the occluded raster of each set (``random_subset``: its
        first draw)
    subset_draws : (R, N, H, W) bool array, the rasters of every random-subset draw
    polygons : list of N pairs (original hull polygons, GAD hull polygons)
    n_pixels, n_regions, complexity, hull_area : name -> (N,) array, as the columns of the table of
        :func:`evaluate_maps` (``random_subset``: the median over the draws)
    """

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
    """The region sets of each image, as the evaluation measures and occludes them.

    - ``original``, ``gad`` (and ``gad_alpha0`` with ``control_importance``): the significant pixels
      of the map (:func:`significant_pixels`), grouped, each group's convex hull, rasterised;
    - ``rest``: ``original`` minus ``gad``, pixelwise (the original's regions that GAD dropped);
    - ``random``: random regions with the GAD raster's pixel count and component sizes, grown on
      the object (:func:`gadlib.evaluation.baselines.on_object_blobs` inside the pixels a black fill
      changes);
    - ``top_n``: the original map's own n most important pixels, n = GAD's significant pixel count;
    - ``random_subset``: n pixels drawn from the original's significant pixels, ``random_subset_draws``
      times (its statistics are medians over the draws).

    Parameters
    ----------
    images : (N, C, H, W) pixel-space images (numpy or torch), for the on-object control
    original_importance, gad_importance, control_importance : (N, H, W) non-negative per-pixel
        importance (``control_importance`` optional)
    threshold_mode, q, tau : evaluation binarisation (see :func:`significant_pixels`)
    dilation, min_pixels : grouping (see :func:`gadlib.evaluation.regions.group_pixels`)
    random_subset_draws : R >= 1, draws of the random subset
    rng : numpy.random.Generator or int seed (default 0: the same draws on every call); the random
        sets are drawn image by image, in order
    progress : show a progress bar; desc : its label

    Returns
    -------
    RegionSets. Complexity is the hull-union area fraction for the sets made from pixels, the raster
    area fraction for rest and random; n_regions counts hull polygons, or 8-connected raster
    components for rest and random.
    """
    if rng is None:
        raise TypeError("rng must be a numpy.random.Generator or an int seed (not None), for reproducibility")
    if random_subset_draws < 1:
        raise ValueError(f"random_subset_draws must be >= 1; got {random_subset_draws}")
    rng = np.random.default_rng(rng)
    pixels = check_images(as_numpy(images), "images", pixel_space=True)
    n, _, h, w = pixels.shape
    importance = {"original": original_importance, "gad": gad_importance, CONTROL_SET: control_importance}
    significant = {
        name: significant_pixels(
            torch.from_numpy(check_importance(value, f"{name}_importance", shape=(n, h, w))),
            threshold_mode,
            q,
            tau,
            quiet=name != "original",
        ).numpy()
        for name, value in importance.items()
        if value is not None
    }
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
    """Tidy per-image table of hull complexity, RC and occlusion sensitivity RS of every region set.

    Parameters
    ----------
    model : classifier taking pixel-space images (on the images' device), i.e. normalising inside
    images : (N, C, H, W) float tensor in [0, 1], pixel space (refused otherwise)
    targets : int or (N,) ints, the explained (and scored) class
    original_importance, gad_importance : (N, H, W) non-negative per-pixel importance of the
        original and GAD maps, tensors or arrays: ``pixel_importance(maps)`` of any (N, C, H, W)
        attribution maps (:func:`gadlib.method.fusion.pixel_importance`: sum over channels of
        |map|), or ``details.importance[0]`` of :meth:`GAD.attribute_detailed` for the original;
        NaN or infinite values count as 0, with a warning
    method : str, attribution method name written in the ``method`` column
    control_importance : optional (N, H, W) importance of a control GAD map (e.g. the support models
        trained without distancing), evaluated as region set ``gad_alpha0``
    threshold_mode, q, tau : evaluation binarisation (see :func:`significant_pixels`)
    dilation, min_pixels : grouping (see :func:`gadlib.evaluation.regions.group_pixels`)
    fill : the occlusion fill of the ``score``, ``occluded_score``, ``score_drop`` and ``rs`` columns
        (see :func:`gadlib.evaluation.sensitivity.occlude`)
    other_fills : further fills, each measured into its own ``rs_<fill>`` column (``rs_<fill>`` of
        ``fill`` itself is written too)
    mean, blur_sigma : parameters of the ``mean`` and ``blur`` fills
    score_mode, other : score (see :func:`gadlib.evaluation.sensitivity.score`)
    random_subset_draws : draws of the ``random_subset`` baseline (its values are medians over them)
    rng : numpy.random.Generator or int seed, for the random sets; default 0 (the same draws on
        every call)
    batch_size : inputs per forward pass
    occlusion : if False, skip the forward passes; score, occluded_score, score_drop and rs are NaN
    progress : show progress bars
    image_ids : (N,) identifiers for the ``image`` column; default 0..N-1

    Returns
    -------
    DataFrame with one row per image and region set (image-major; sets in the order of
    :data:`REGION_SETS`, then ``gad_alpha0``; see :func:`build_region_sets`) and columns:

    - ``image``, ``method``, ``target``, ``region_set``;
    - ``n_pixels``: significant pixels before grouping (original, gad, top_n, random_subset,
      gad_alpha0), raster pixels (rest, random);
    - ``n_regions``: hull polygons, or 8-connected raster components for rest and random;
    - ``complexity``: hull-union area / (H W) (lower = simpler); raster area fraction for rest and random;
    - ``hull_area``: hull-union area in pixels (NaN for rest and random);
    - ``area_pixels``: occluded pixels a (raster area), the RS denominator;
    - ``rc``: complexity / complexity(original) of the same image (lower = simpler than the
      original; NaN when the original map is empty);
    - ``score``, ``occluded_score``, ``score_drop``, ``rs``: see
      :func:`gadlib.evaluation.sensitivity.occlusion_sensitivity` (higher rs = more sensitive; NaN if a = 0);
    - ``rs_<fill>`` for ``fill`` and each of ``other_fills``.

    The defaults are the pipeline's: top 10% of each map, dilation by 1 pixel, black fill, the
    target logit as score. :func:`summarize` turns the table into per-method numbers.

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
    sets = build_region_sets(
        images,
        original_importance,
        gad_importance,
        control_importance=control_importance,
        threshold_mode=threshold_mode,
        q=q,
        tau=tau,
        dilation=dilation,
        min_pixels=min_pixels,
        random_subset_draws=random_subset_draws,
        rng=rng,
        progress=progress,
        desc=f"hulls {method}",
    )
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
        for fill_name in fills:
            with warnings.catch_warnings():  # empty region sets (an empty GAD map) give NaN, counted later
                warnings.filterwarnings("ignore", message="RS undefined")
                results = occlusion_sensitivity(
                    model,
                    images,
                    occluded,
                    target_t,
                    fill=fill_name,
                    score_mode=score_mode,
                    other=other,
                    mean=mean,
                    blur_sigma=blur_sigma,
                    batch_size=batch_size,
                    progress=progress,
                )
            draws = [results[f"random_subset_{r}"] for r in range(len(sets.subset_draws))]
            results["random_subset"] = OcclusionResult(
                **{key: np.median([getattr(d, key) for d in draws], axis=0) for key in vars(draws[0])}
            )
            measured[fill_name] = {name: vars(results[name]) for name in names}

    frames = []
    for name in names:
        primary = measured[fills[0]][name]
        frame = {
            "image": ids,
            "method": method,
            "target": target_t.numpy(),
            "region_set": name,
            "n_pixels": sets.n_pixels[name],
            "n_regions": sets.n_regions[name],
            "complexity": sets.complexity[name],
            "hull_area": sets.hull_area[name],
            "area_pixels": sets.masks[name].sum(axis=(1, 2)).astype(np.int64)
            if name != "random_subset"
            else np.median(sets.subset_draws.sum(axis=(2, 3)), axis=0),
            "rc": rc[name],
            "score": primary.get("score", nan),
            "occluded_score": primary.get("occluded_score", nan),
            "score_drop": primary.get("score_drop", nan),
            "rs": primary.get("rs", nan),
            **{f"rs_{f}": measured[f][name].get("rs", nan) for f in fills},
            "_order": np.arange(n),
        }
        frames.append(pd.DataFrame(frame))
    table = pd.concat(frames, ignore_index=True)
    table["region_set"] = pd.Categorical(table["region_set"], categories=names)
    table = table.sort_values(["_order", "region_set"], kind="stable").drop(columns="_order")
    table["region_set"] = table["region_set"].astype(str)
    return table.reset_index(drop=True)[[*TABLE_COLUMNS, *(f"rs_{f}" for f in fills)]]


def _stats(values: np.ndarray, prefix: str) -> dict:
    finite = values[np.isfinite(values)]
    out = {
        f"{prefix}_mean": float(finite.mean()) if finite.size else float("nan"),
        f"{prefix}_median": float(np.median(finite)) if finite.size else float("nan"),
        f"{prefix}_std": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
        f"{prefix}_q25": float(np.quantile(finite, 0.25)) if finite.size else float("nan"),
        f"{prefix}_q75": float(np.quantile(finite, 0.75)) if finite.size else float("nan"),
        f"n_{prefix}_nan": int(values.size - finite.size),
    }
    return out


def _fraction(condition: np.ndarray, valid: np.ndarray) -> float:
    return float(condition[valid].mean()) if valid.any() else float("nan")


def summarize(table: pd.DataFrame) -> dict:
    """Summary per method of a table from :func:`evaluate_maps`, as plain JSON-ready numbers.

    Parameters
    ----------
    table : DataFrame with columns image, method, region_set, rc, rs, complexity (one row per
        method x image x region set; concatenate several evaluate_maps tables for several methods)

    Returns
    -------
    dict method -> dict of floats/ints:

    - ``n_images``;
    - ``rc_mean``, ``rc_median``, ``rc_std`` (ddof=1), ``rc_q25``, ``rc_q75`` over finite RC, and
      ``n_rc_nan``; lower RC = GAD simpler;
    - ``rc_below_1``: fraction of images with RC < 1 among those with finite RC (the paper's claim;
      higher = claim holds more often);
    - ``rs_<set>_mean``/``_median``/``_std``/``_q25``/``_q75`` and ``n_rs_<set>_nan`` for each region
      set (original, gad, rest, random), over finite RS;
    - ``rs_gad_beats_rest``: fraction of images with RS(gad) > RS(rest), among images where both are
      finite (``n_rs_gad_rest_pairs`` of them); ``rs_gad_beats_random`` likewise;
    - ``complexity_original_mean``, ``complexity_gad_mean``;
    - ``gad_empty``: fraction of images whose GAD map keeps no pixel (RC = 0 there, which counts
      toward ``rc_below_1``); ``rc_median_nonempty``: the median RC over the other images.

    NaN values are ignored; a statistic with no finite value is NaN (written as null by
    :func:`gadlib.common.atomic.write_json`).
    """
    required = {"image", "method", "region_set", "rc", "rs", "complexity"}
    missing = required - set(table.columns)
    if missing:
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
        rs = group.pivot(index="image", columns="region_set", values="rs")
        comp = group.pivot(index="image", columns="region_set", values="complexity")
        rs = rs.reindex(columns=list(REGION_SETS))
        comp = comp.reindex(columns=list(REGION_SETS))
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
        g, r, c = (rs[k].to_numpy(dtype=np.float64) for k in ("gad", "rest", "random"))
        both_rest = np.isfinite(g) & np.isfinite(r)
        both_random = np.isfinite(g) & np.isfinite(c)
        out["rs_gad_beats_rest"] = _fraction(g > r, both_rest)
        out["n_rs_gad_rest_pairs"] = int(both_rest.sum())
        out["rs_gad_beats_random"] = _fraction(g > c, both_random)
        out["n_rs_gad_random_pairs"] = int(both_random.sum())
        for name in ("original", "gad"):
            v = comp[name].to_numpy(dtype=np.float64)
            v = v[np.isfinite(v)]
            out[f"complexity_{name}_mean"] = float(v.mean()) if v.size else float("nan")
        summary[str(method)] = out
    return summary
