"""Stage ``hull_metrics``: hull complexity, RC and occlusion sensitivity RS per image and method."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from gadlib.common.atomic import write_json, write_text
from gadlib.data.prepared import load_prepared
from gadlib.evaluation.table import evaluate_maps, summarize
from gadlib.pipeline.experiment import load_attributions, load_classifier
from gadlib.pipeline.params import Params
from gadlib.pipeline.paths import ExperimentPaths


def run(params: Params, name: str, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Evaluate every method's original and GAD maps; save the per-image table and its summary."""
    paths = ExperimentPaths(name)
    prepared = load_prepared(paths.prepared)
    original = load_classifier(params, name, prepared)
    regions, sens = params.regions, params.sensitivity
    tables = []
    for method in params.attribution.methods:
        saved = load_attributions(name, method)
        other = None
        if sens.score == "margin":
            other = 1 - saved["targets"] if len(prepared.class_names) == 2 else None
        table = evaluate_maps(
            original,
            torch.from_numpy(saved["images"]),
            torch.from_numpy(saved["targets"]),
            saved["importance"][0],
            saved["gad_importance"],
            method=method,
            threshold_mode=regions.threshold_mode,
            q=regions.q,
            tau=regions.tau,
            dilation=regions.dilation,
            min_pixels=regions.min_pixels,
            fill=sens.fill,
            mean=prepared.mean,
            blur_sigma=sens.blur_sigma,
            score_mode=sens.score,
            other=other,
            rng=np.random.default_rng(params.seed),
            progress=progress,
            image_ids=saved["index"],
        )
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    table.insert(0, "experiment", name)
    summary = summarize(table)
    write_text(paths.hull_metrics, table.to_csv(index=False))
    write_json(paths.summary, summary)
    return table, summary
