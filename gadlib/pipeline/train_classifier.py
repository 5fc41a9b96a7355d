"""Stage ``train_classifier``: the model under explanation: Adam with a learning-rate schedule,
augmented batches, early stopping and model selection on the validation loss."""

from __future__ import annotations

import time

import torch

from gadlib.common.atomic import write_json
from gadlib.data.prepared import load_prepared
from gadlib.models import checkpoints, training
from gadlib.pipeline.experiment import new_classifier
from gadlib.pipeline.params import Params
from gadlib.pipeline.paths import ExperimentPaths


def run(params: Params, name: str) -> tuple[torch.nn.Module, dict]:
    """Train the classifier with early stopping; save it and its summary (accuracy, history)."""
    paths = ExperimentPaths(name)
    prepared = load_prepared(paths.prepared)
    cfg = params.classifier
    torch.manual_seed(params.seed)  # the initial weights follow params.yaml's seed
    model = new_classifier(params, name, prepared, pretrained=cfg.pretrained)
    start = time.perf_counter()
    history = training.train_model(
        model,
        prepared.train.images,
        prepared.train.labels,
        loss="cross_entropy",
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=params.seed,
        val_images=prepared.val.images,
        val_targets=prepared.val.labels,
        early_stopping_patience=cfg.patience,
        select_best=True,
        augment=training.Augmentation(cfg.crop_padding, cfg.horizontal_flip),
        schedule=cfg.schedule,
    )
    seconds = time.perf_counter() - start
    model.eval()
    logits = training.predict_logits(model, prepared.test.images)
    accuracy = float((logits.argmax(1) == prepared.test.labels).float().mean())
    summary = {
        "experiment": name,
        "accuracy": accuracy,
        "n_test": len(prepared.test),
        "n_train": len(prepared.train),
        "classes": prepared.class_names,
        "train_seconds": seconds,
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "train_loss": history.train_loss,
        "val_loss": history.val_loss,
        "val_accuracy": history.val_accuracy,
    }
    checkpoints.save_checkpoint(paths.classifier, model, {"experiment": name, "accuracy": accuracy})
    write_json(paths.classifier_summary, summary)
    return model, summary
