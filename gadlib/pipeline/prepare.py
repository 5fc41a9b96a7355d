"""Stage ``prepare``: select the experiment's classes, subsample and split them, save the images."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gadlib.data.prepared import PreparedData, prepare_experiment, save_prepared
from gadlib.pipeline.params import Params, resolve_path
from gadlib.pipeline.paths import ExperimentPaths


def run(params: Params, name: str) -> PreparedData:
    """Select, split and save the experiment's images (``artifacts/<name>/prepared.npz``)."""
    exp, data = params.experiments[name], params.data
    prepared = prepare_experiment(
        exp.dataset,
        resolve_path(exp.data_dir),
        exp.classes,
        exp.image_size,
        seed=params.seed,
        max_train_per_class=data.max_train_per_class,
        max_test_per_class=data.max_test_per_class,
        val_fraction=data.val_fraction,
        test_fraction=data.test_fraction,
    )
    save_prepared(ExperimentPaths(name).prepared, prepared)
    return prepared


def split_counts(prepared: PreparedData) -> pd.DataFrame:
    """Images per class and split, for display."""
    rows = {
        split: np.bincount(getattr(prepared, split).labels.numpy(), minlength=len(prepared.class_names))
        for split in ("train", "val", "test")
    }
    return pd.DataFrame(rows, index=prepared.class_names)
