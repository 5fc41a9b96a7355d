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

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from gadlib.common.checks import check_images, check_importance
from gadlib.common.progress import tqdm
from gadlib.common.targets import class_indices
from gadlib.evaluation.regions import EIGHT_CONNECTED, hull_complexity, hull_polygons, rasterize, relative_complexity
from gadlib.evaluation.sensitivity import occlusion_sensitivity, random_region_mask
from gadlib.method.fusion import binarize

REGION_SETS = ("original", "gad", "rest", "random")
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
    "score",
    "occluded_score",
    "drop",
    "rs",
    "rc",
)


def significant_pixels(
    importance: torch.Tensor, threshold_mode: str = "quantile", q: float = 0.9, tau: float = 0.5
) -> torch.Tensor:
    """Significant pixels of each map: :func:`gadlib.method.fusion.binarize`, minus zero-importance pixels.

    A GAD map is zero outside its consistency mask, usually on more than (1 - q) of the image, so its
    q-quantile is 0 and ``binarize`` alone would keep every pixel. A pixel of importance 0 is never
    significant, so it is removed here; for a map with a positive threshold nothing changes.

    Parameters
    ----------
    importance : (N, H, W) non-negative tensor
    threshold_mode, q, tau : as in :func:`gadlib.method.fusion.binarize`

    Returns
    -------
    (N, H, W) bool tensor.
    """
    return binarize(importance, mode=threshold_mode, q=q, tau=tau) & (importance > 0)


@dataclass(frozen=True)
class RegionSets:
    """The four region sets of N images and their statistics (see :func:`build_region_sets`).

    Attributes
    ----------
    masks : dict name -> (N, H, W) bool array, for name in REGION_SETS
    polygons : list of N pairs (original hull polygons, GAD hull polygons)
    n_pixels, n_regions, complexity, hull_area : dict name -> (N,) array, as the columns of the
        table of :func:`evaluate_maps`
    """

    masks: dict
    polygons: list
    n_pixels: dict
    n_regions: dict
    complexity: dict
    hull_area: dict


def build_region_sets(
    original_importance,
    gad_importance,
    *,
    threshold_mode: str = "quantile",
    q: float = 0.9,
    tau: float = 0.5,
    dilation: int = 1,
    min_pixels: int = 1,
    rng,
    progress: bool = True,
    desc: str = "hulls",
) -> RegionSets:
    """Region sets original, gad, rest and random of each image, as the evaluation occludes them.

    Parameters
    ----------
    original_importance, gad_importance : (N, H, W) non-negative per-pixel importance
    threshold_mode, q, tau : evaluation binarisation (see :func:`significant_pixels`)
    dilation, min_pixels : grouping (see :func:`gadlib.evaluation.regions.group_pixels`)
    rng : numpy.random.Generator or int seed; one random control is drawn per image, in order
    progress : show a progress bar; desc : its label

    Returns
    -------
    RegionSets. original / gad: rasterised union of the hull polygons of the significant pixels;
    rest: original minus gad, pixelwise; random: :func:`gadlib.evaluation.sensitivity.random_region_mask` of
    gad. Complexity is the hull-union area fraction for original and gad, the raster area fraction
    for rest and random; n_regions counts hull polygons, or 8-connected raster components for rest
    and random.
    """
    if rng is None:
        raise TypeError("rng must be a numpy.random.Generator or an int seed (not None), for reproducibility")
    rng = np.random.default_rng(rng)
    orig_imp = torch.from_numpy(check_importance(original_importance, "original_importance"))
    n, h, w = orig_imp.shape
    gad_imp = torch.from_numpy(check_importance(gad_importance, "gad_importance", shape=(n, h, w)))
    orig_bin = significant_pixels(orig_imp, threshold_mode, q, tau).numpy()
    gad_bin = significant_pixels(gad_imp, threshold_mode, q, tau).numpy()

    rasters = {name: np.zeros((n, h, w), dtype=bool) for name in REGION_SETS}
    n_pixels = {name: np.zeros(n, dtype=np.int64) for name in REGION_SETS}
    n_regions = {name: np.zeros(n, dtype=np.int64) for name in REGION_SETS}
    complexity = {name: np.zeros(n) for name in REGION_SETS}
    hull_area = {name: np.full(n, np.nan) for name in REGION_SETS}
    polygons = []
    for i in tqdm(range(n), desc=desc, disable=not progress):
        pair = []
        for name, binary in (("original", orig_bin[i]), ("gad", gad_bin[i])):
            polys = hull_polygons(binary, dilation=dilation, min_pixels=min_pixels)
            hc = hull_complexity(polys, (h, w))
            rasters[name][i] = rasterize(polys, (h, w))
            n_pixels[name][i] = int(binary.sum())
            n_regions[name][i] = hc.n_regions
            complexity[name][i] = hc.fraction
            hull_area[name][i] = hc.area_pixels
            pair.append(polys)
        polygons.append(tuple(pair))
        rasters["rest"][i] = rasters["original"][i] & ~rasters["gad"][i]
        rasters["random"][i] = random_region_mask(rasters["gad"][i], rng)
        for name in ("rest", "random"):
            n_regions[name][i] = ndimage.label(rasters[name][i], structure=EIGHT_CONNECTED)[1]
    for name in ("rest", "random"):
        n_pixels[name] = rasters[name].sum(axis=(1, 2))
        complexity[name] = n_pixels[name] / (h * w)
    return RegionSets(rasters, polygons, n_pixels, n_regions, complexity, hull_area)


def evaluate_maps(
    model: torch.nn.Module,
    images: torch.Tensor,
    targets,
    original_importance,
    gad_importance,
    *,
    method: str,
    threshold_mode: str = "quantile",
    q: float = 0.9,
    tau: float = 0.5,
    dilation: int = 1,
    min_pixels: int = 1,
    fill: str = "black",
    mean=None,
    blur_sigma: float = 2.0,
    score_mode: str = "logit",
    other=None,
    rng,
    batch_size: int = 256,
    occlusion: bool = True,
    progress: bool = True,
    image_ids=None,
) -> pd.DataFrame:
    """Tidy per-image table of hull complexity, RC and occlusion sensitivity RS of four region sets.

    Parameters
    ----------
    model : classifier taking pixel-space images (on the images' device)
    images : (N, C, H, W) float tensor in [0, 1], pixel space
    targets : int or (N,) ints, the explained (and scored) class
    original_importance, gad_importance : (N, H, W) non-negative per-pixel importance of the
        original and GAD maps (:func:`gadlib.method.fusion.pixel_importance`), tensors or arrays;
        NaN or infinite values count as 0, with a warning
    method : str, attribution method name written in the ``method`` column
    threshold_mode, q, tau : evaluation binarisation (see :func:`significant_pixels`)
    dilation, min_pixels : grouping (see :func:`gadlib.evaluation.regions.group_pixels`)
    fill, mean, blur_sigma : occlusion fill (see :func:`gadlib.evaluation.sensitivity.occlude`)
    score_mode, other : score (see :func:`gadlib.evaluation.sensitivity.score`)
    rng : numpy.random.Generator or int seed, for the random control sets
    batch_size : inputs per forward pass
    occlusion : if False, skip the forward passes; score, occluded_score, drop and rs are NaN
    progress : show progress bars
    image_ids : (N,) identifiers for the ``image`` column; default 0..N-1

    Returns
    -------
    DataFrame with 4 N rows (image-major, region sets in the order original, gad, rest, random) and
    columns:

    - ``image``, ``method``, ``target``, ``region_set``;
    - ``n_pixels``: significant pixels before grouping (original, gad), raster pixels (rest, random);
    - ``n_regions``: hull polygons (original, gad); 8-connected raster components (rest, random);
    - ``complexity``: hull-union area / (H W) for original and gad (lower = simpler map); raster
      area fraction for rest and random;
    - ``hull_area``: hull-union area in pixels (original, gad; NaN otherwise);
    - ``area_pixels``: occluded pixels a (raster area), the RS denominator;
    - ``score``, ``occluded_score``, ``drop``, ``rs``: see
      :func:`gadlib.evaluation.sensitivity.occlusion_sensitivity` (higher rs = more sensitive; NaN if a = 0);
    - ``rc``: on the gad row, complexity(gad) / complexity(original) (lower = GAD simpler; NaN with
      one warning per call when the original map is empty); NaN on the other rows.
    """
    check_images(images, pixel_space=True, require_tensor=True)
    if rng is None:
        raise TypeError("rng must be a numpy.random.Generator or an int seed (not None), for reproducibility")
    rng = np.random.default_rng(rng)
    n, _, h, w = images.shape
    orig_imp = check_importance(original_importance, "original_importance", shape=(n, h, w))
    gad_imp = check_importance(gad_importance, "gad_importance", shape=(n, h, w))
    target_t = class_indices(targets, n, device="cpu")
    ids = np.arange(n) if image_ids is None else np.asarray(image_ids)
    if ids.shape != (n,):
        raise ValueError(f"image_ids must have shape ({n},); got {ids.shape}")
    sets = build_region_sets(
        orig_imp,
        gad_imp,
        threshold_mode=threshold_mode,
        q=q,
        tau=tau,
        dilation=dilation,
        min_pixels=min_pixels,
        rng=rng,
        progress=progress,
        desc=f"hulls {method}",
    )
    rasters, complexity = sets.masks, sets.complexity
    rc = relative_complexity(complexity["gad"], complexity["original"])

    nan = np.full(n, np.nan)
    sens = {name: {"score": nan, "occluded_score": nan, "drop": nan, "rs": nan} for name in REGION_SETS}
    if occlusion:
        # Empty sets (e.g. rest when GAD keeps every original region) give RS NaN and one warning.
        results = occlusion_sensitivity(
            model,
            images,
            {k: torch.from_numpy(v) for k, v in rasters.items()},
            target_t,
            fill=fill,
            score_mode=score_mode,
            other=other,
            mean=mean,
            blur_sigma=blur_sigma,
            batch_size=batch_size,
            progress=progress,
        )
        sens = {k: vars(r) for k, r in results.items()}

    frames = [
        pd.DataFrame(
            {
                "image": ids,
                "method": method,
                "target": target_t.numpy(),
                "region_set": name,
                "n_pixels": sets.n_pixels[name],
                "n_regions": sets.n_regions[name],
                "complexity": complexity[name],
                "hull_area": sets.hull_area[name],
                "area_pixels": rasters[name].sum(axis=(1, 2)).astype(np.int64),
                "score": sens[name]["score"],
                "occluded_score": sens[name]["occluded_score"],
                "drop": sens[name]["drop"],
                "rs": sens[name]["rs"],
                "rc": rc if name == "gad" else nan,
                "_order": np.arange(n),
            }
        )
        for name in REGION_SETS
    ]
    table = pd.concat(frames, ignore_index=True)
    table["region_set"] = pd.Categorical(table["region_set"], categories=REGION_SETS)
    table = table.sort_values(["_order", "region_set"], kind="stable").drop(columns="_order")
    table["region_set"] = table["region_set"].astype(str)
    return table.reset_index(drop=True)[list(TABLE_COLUMNS)]


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
      toward ``rc_below_1``).

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
