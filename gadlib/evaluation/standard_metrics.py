"""Quantus's standard metrics of the original and the GAD map (docs/method.md), through
:class:`gadlib.evaluation.quantus_adapter.QuantusExplainFunc`; Quantus, imported on first use, keeps its
defaults except logits as scores, Pixel-Flipping to black summarised by the curve's mean, and MPRT
top-down on the last layer by a Spearman correlation. An empty map has NaN for every metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from gadlib.common.checks import as_numpy, check_finite_images, check_images
from gadlib.evaluation.quantus_adapter import OUTPUTS, QuantusExplainFunc
from gadlib.method.gad import GAD, resolve_target
from gadlib.models.architectures import model_device

STANDARD_METRICS = ("sparseness", "complexity", "pixel_flipping", "randomisation")
QUANTUS_VERSION = "0.6.0"  # the version these settings were written and tested against
METRIC_DIRECTIONS = {
    "sparseness": "higher = sparser: the map's |values| concentrate on fewer features (Gini index; Quantus "
    "Sparseness, Chalasani et al. 2020)",
    "complexity": "lower = simpler: lower entropy of the map's |values| spread over the features (Quantus "
    "Complexity, Bhatt et al. 2020)",
    "pixel_flipping": "lower = more faithful: the mean target logit while the most important pixels are "
    "replaced by black first (Quantus PixelFlipping curve, Bach et al. 2015)",
    "randomisation": "lower = the map depends more on the learned weights, as it should: Spearman correlation "
    "between the maps of the trained and of the fully randomised model (Quantus MPRT, Adebayo et al. 2018)",
}
TABLE_COLUMNS = ("image", "method", "map", "metric", "value", "empty")


def standard_metrics(
    gad: GAD,
    images: Any,
    targets: Any = None,
    *,
    maps: Sequence[str] = OUTPUTS,
    metrics: Sequence[str] = STANDARD_METRICS,
    randomisation: str = "randomise",
    train_images: Any = None,
    train_labels: Any = None,
    support_options: Mapping[str, Any] | None = None,
    features_in_step: int | None = None,
    seed: int = 42,
    batch_size: int = 64,
    image_ids: Any = None,
    **attribute_kwargs: Any,
) -> pd.DataFrame:
    """Quantus's Sparseness, Complexity, Pixel-Flipping and MPRT of the original and the GAD map: a DataFrame
    of one row per image x map x metric, columns ``image``, ``method``, ``map``, ``metric``, ``value`` (NaN
    for an empty map; directions in :data:`METRIC_DIRECTIONS`) and ``empty``.

    ``gad``: one method's GAD configuration (Quantus evaluates its original model); ``images``: (N, C, H, W)
    finite pixel-space images in [0, 1]; ``targets``: None (predicted), one class index or N; ``maps``:
    ``"original"`` (A_0) and/or ``"gad"``; ``randomisation``, ``train_images``, ``train_labels``,
    ``support_options``: MPRT's support models (:class:`gadlib.evaluation.quantus_adapter.QuantusExplainFunc`);
    ``features_in_step``: values Pixel-Flipping replaces per step (dividing H * W; default W); ``seed``: of
    the layer randomisation; ``image_ids``: (N,) for the ``image`` column; ``attribute_kwargs``: for
    :meth:`GAD.attribute`.
    """
    quantus = _import_quantus()
    unknown = [m for m in metrics if m not in STANDARD_METRICS] + [m for m in maps if m not in OUTPUTS]
    if unknown or not metrics or not maps:
        raise ValueError(f"unknown or no metrics/maps {unknown}; metrics from {STANDARD_METRICS}, maps from {OUTPUTS}")
    model = gad.models[0]
    x = as_numpy(check_finite_images(check_images(images, "images", pixel_space=True), "images")).astype(np.float32)
    n, _, height, width = x.shape
    y = resolve_target(model, torch.from_numpy(x).to(model_device(model)), targets).numpy()
    ids = np.arange(n) if image_ids is None else np.asarray(image_ids)
    if ids.shape != (n,):
        raise ValueError(f"image_ids must have shape ({n},); got {ids.shape}")
    step = width if features_in_step is None else int(features_in_step)
    if step < 1 or (height * width) % step:
        raise ValueError(f"features_in_step must divide H * W = {height * width}; got {features_in_step}")
    common = {"softmax": False, "device": str(model_device(model)), "batch_size": batch_size}
    quiet = {"disable_warnings": True, "display_progressbar": False}
    retrain = {"randomisation": randomisation, "train_images": train_images, "train_labels": train_labels}
    method = gad.method if isinstance(gad.method, str) else gad.method.__name__
    rows = []
    for which in maps:
        explain = QuantusExplainFunc(gad, output=which, support_options=support_options, **retrain, **attribute_kwargs)
        a = explain(model, x, y)
        empty = ~(a.reshape(n, -1) != 0).any(axis=1)
        kept = np.flatnonzero(~empty)
        values = {metric: np.full(n, math.nan) for metric in metrics}
        if kept.size:
            data = {"model": model, "x_batch": x[kept], "y_batch": y[kept], "a_batch": a[kept], **common}
            if "sparseness" in metrics:
                values["sparseness"][kept] = quantus.Sparseness(**quiet)(**data)
            if "complexity" in metrics:
                values["complexity"][kept] = quantus.Complexity(**quiet)(**data)
            if "pixel_flipping" in metrics:
                flipping = quantus.PixelFlipping(features_in_step=step, perturb_baseline=0.0, **quiet)
                curves = np.asarray(flipping(**data), dtype=np.float64)
                # the mean along the curve (quantus 0.6.0's own AUC calls np.trapz, gone from numpy 2.x)
                values["pixel_flipping"][kept] = np.trapezoid(curves, axis=1) / max(curves.shape[1] - 1, 1)
            if "randomisation" in metrics:
                values["randomisation"][kept] = _randomisation_test(quantus, data, explain, seed, quiet)
        for metric in metrics:
            frame = {"image": ids, "method": method, "map": which, "metric": metric, "value": values[metric]}
            rows.append(pd.DataFrame({**frame, "empty": empty}))
    table = pd.concat(rows, ignore_index=True)
    return table[list(TABLE_COLUMNS)]


def summarize_standard_metrics(table: pd.DataFrame) -> dict:
    """JSON-ready summary of :func:`standard_metrics` tables: ``{"direction": METRIC_DIRECTIONS,
    "quantus_version": ..., <method>: {<map>: {<metric>: {"mean", "median", "q25", "q75", "n", "n_nan"}}}}``
    over the finite values (NaN where none); ``n_nan`` counts empty maps and undefined values."""
    if missing := set(TABLE_COLUMNS) - set(table.columns):
        raise ValueError(f"table lacks columns {sorted(missing)}; pass the output of standard_metrics")
    summary: dict = {"direction": dict(METRIC_DIRECTIONS), "quantus_version": QUANTUS_VERSION}
    for (method, which, metric), group in table.groupby(["method", "map", "metric"], sort=True):
        values = group["value"].to_numpy(dtype=np.float64)
        finite = values[np.isfinite(values)]
        q25, median, q75 = np.quantile(finite, (0.25, 0.5, 0.75)) if finite.size else (math.nan,) * 3
        summary.setdefault(str(method), {}).setdefault(str(which), {})[str(metric)] = {
            "mean": float(finite.mean()) if finite.size else math.nan,
            "median": float(median),
            "q25": float(q25),
            "q75": float(q75),
            "n": int(finite.size),
            "n_nan": int(values.size - finite.size),
        }
    return summary


def spearman_rows(a: np.ndarray, b: np.ndarray, batched: bool = True, **_: Any) -> np.ndarray | float:
    """Spearman rank correlation of each row of ``a`` with the same row of ``b``, NaN for a constant row:
    Quantus's similarity-function signature (its own ``correlation_spearman`` fails on a constant map)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a, b = (
        a.reshape(len(a), -1) if batched else a.reshape(1, -1),
        b.reshape(len(b), -1) if batched else b.reshape(1, -1),
    )
    out = np.full(len(a), math.nan)
    for i, (first, second) in enumerate(zip(a, b, strict=True)):
        if np.ptp(first) > 0 and np.ptp(second) > 0:
            out[i] = stats.spearmanr(first, second)[0]
    return out if batched else float(out[0])


def _randomisation_test(quantus: Any, data: dict, explain: QuantusExplainFunc, seed: int, quiet: dict) -> np.ndarray:
    """MPRT's last-layer correlation per image; image by image when a whole batch of maps is all zero
    (Quantus refuses such a batch), with NaN for an image whose randomised map is all zero."""

    def mprt(batch: dict) -> list[float]:
        last_layer = {"skip_layers": True, "return_last_correlation": True}  # trained vs fully randomised
        metric = quantus.MPRT(similarity_func=spearman_rows, layer_order="top_down", seed=seed, **last_layer, **quiet)
        return metric(**batch, explain_func=explain)

    try:
        return np.asarray(mprt(data), dtype=np.float64)
    except AssertionError as err:
        if "all equal to zero" not in str(err):
            raise
    results = []
    for i in range(len(data["x_batch"])):
        one = {**data, **{key: data[key][i : i + 1] for key in ("x_batch", "y_batch", "a_batch")}}
        try:
            results.append(mprt(one)[0])
        except AssertionError as err:
            if "all equal to zero" not in str(err):
                raise
            results.append(math.nan)
    return np.asarray(results, dtype=np.float64)


def _import_quantus() -> Any:
    try:
        import quantus
    except ImportError as err:
        raise ImportError(
            f"the standard metrics need Quantus: pip install quantus=={QUANTUS_VERSION} (with "
            f"opencv-python-headless and scikit-learn; requirements.lock pins them); {err}"
        ) from err
    return quantus
