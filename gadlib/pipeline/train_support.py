"""Stage ``train_support``: Algorithm 1's support models, one set per distancing, and their fidelity."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from gadlib.common.atomic import remove_stale_temporaries, write_text
from gadlib.data.datasets import subsample_per_class
from gadlib.data.prepared import load_prepared
from gadlib.method import support
from gadlib.method.distancing import two_means_split
from gadlib.models import training
from gadlib.pipeline.experiment import load_classifier, trained_sets
from gadlib.pipeline.params import Params
from gadlib.pipeline.paths import ExperimentPaths


def run(params: Params, name: str) -> tuple[dict[str, list], pd.DataFrame]:
    """Train every support set of the experiment (resuming finished models), save the fidelity table."""
    paths = ExperimentPaths(name)
    prepared = load_prepared(paths.prepared)
    device = training.select_device()
    original = load_classifier(params, name, prepared).to(device)
    cfg = params.support
    # the support models regress the logits of a class-balanced subset of the training images
    subset = subsample_per_class(prepared.train.labels, cfg.max_train_per_class, params.seed)
    images, labels = prepared.train.images[subset], prepared.train.labels[subset]
    trained, rows = {}, []
    sets = trained_sets(params, name, prepared.class_names)
    remove_unused_support_sets(paths.support_dir, {spec.name for spec in sets})
    for spec in sets:
        alphas, groups = spec.alphas(params), spec.groups
        if spec.strategy == "split" and groups is None:
            groups = two_means_split(training.predict_logits(original, images), labels, seed=params.seed)
        start = time.perf_counter()
        support.train_support_models(
            original,
            images,
            labels,
            alphas=alphas,
            strategy=spec.strategy,
            pair=spec.pair,
            cls=spec.cls,
            groups=groups,
            init=cfg.init,
            epochs=cfg.epochs,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            min_steps=0,  # exactly support.epochs, as params.yaml says (the library's default adds steps on small data)
            seed=params.seed,
            device=device,
            checkpoint_dir=paths.support_dir / spec.name,
        )
        seconds = time.perf_counter() - start
        # Reloaded from the checkpoints, so a resumed run reports exactly what a fresh one would.
        supports, metas = support.load_support_models(paths.support_dir / spec.name, original, alphas)
        fidelity = support.support_fidelity(
            original,
            supports,
            alphas,
            prepared.test.images,
            prepared.test.labels,
            strategy=spec.strategy,
            pair=spec.pair,
            cls=spec.cls,
            groups=groups,
            spread=metas[0].get("spread"),
            final_losses=[m.get("final_loss") for m in metas],
        )
        for model_index, row in enumerate(fidelity):
            rows.append(
                {"experiment": name, "support_set": spec.name, "model": model_index, **row, "train_seconds": seconds}
            )
        trained[spec.name] = supports
    table = pd.DataFrame(rows)
    write_text(paths.fidelity, table.to_csv(index=False))
    return trained, table


def remove_unused_support_sets(support_dir: Path, names: set[str]) -> None:
    """Delete the support models of sets the experiment no longer has (e.g. a class dropped from One
    vs. All), so the stage's output depends on its params only. A folder holding anything else stays."""
    if not support_dir.is_dir():
        return
    for folder in support_dir.iterdir():
        if folder.is_dir() and folder.name not in names:
            support.remove_surplus_checkpoints(folder, 0)
            remove_stale_temporaries(folder)  # a killed save's leftover is no reason to keep the folder
            if not any(folder.iterdir()):
                folder.rmdir()
