"""The maps notebooks/04_attribute saved, and the region sets step 5 measured on them."""

from __future__ import annotations

import numpy as np

from gadlib.common.atomic import load_arrays
from gadlib.evaluation.table import RegionSets, build_region_sets
from gadlib.project.params import Params
from gadlib.project.paths import ExperimentPaths


def load_attributions(name: str, method: str) -> dict[str, np.ndarray]:
    """What notebooks/04_attribute saved for one method: ``images`` (N, C, H, W), ``importance`` and
    ``masks`` (K + 1, N, H, W), ``consistency``, ``gad``, ``gad_importance``, ``index``, ``targets``, ..."""
    return load_arrays(ExperimentPaths(name).attributions(method))


def example_region_sets(saved: dict, params: Params, n_examples: int) -> RegionSets:
    """The region sets and hull polygons of the first ``n_examples`` saved images, built by the same
    function, with the same settings and random draws, as notebooks/05_hull_metrics measured them."""
    control = saved.get("gad_alpha0_importance")
    return build_region_sets(
        saved["images"][:n_examples],
        saved["importance"][0, :n_examples],
        saved["gad_importance"][:n_examples],
        control_importance=None if control is None else control[:n_examples],
        **params.regions.model_dump(),
        random_subset_draws=params.statistics.random_subset_draws,
        rng=np.random.default_rng(params.seed),
        progress=False,
    )
