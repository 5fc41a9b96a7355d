"""The pipeline's stages as functions: each takes the validated params and an experiment name,
reads the previous stage's outputs, does its work, writes its outputs atomically and returns what
the notebook shows. Notebooks stay thin: they call one of these per stage.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from gadlib import attribution as attr
from gadlib import checkpoints, models, support, training
from gadlib.atomic import load_arrays, remove_stale_temporaries, save_arrays, write_json, write_text
from gadlib.data import subsample_per_class
from gadlib.distancing import two_means_split
from gadlib.evaluation import evaluate_maps, summarize
from gadlib.paths import ExperimentPaths
from gadlib.prepared import PreparedData, load_prepared, prepare_experiment, save_prepared
from gadlib.thresholding import pixel_importance


def default_experiment(params: dict, experiment: str | None) -> str:
    """The experiment a notebook works on: the given one, or the first in params.yaml."""
    if experiment is None:
        return next(iter(params["experiments"]))
    if experiment not in params["experiments"]:
        raise ValueError(f"unknown experiment {experiment!r}; params.yaml defines {list(params['experiments'])}")
    return experiment


# ----------------------------------------------------------------------------- prepare
def run_prepare(params: dict, name: str) -> PreparedData:
    """Select, split and save the experiment's images (artifacts/<name>/prepared.npz)."""
    prepared = prepare_experiment(params["data"], params["experiments"][name], params["seed"])
    save_prepared(ExperimentPaths(name).prepared, prepared)
    return prepared


def split_counts(prepared: PreparedData) -> pd.DataFrame:
    """Images per class and split, for display."""
    rows = {split: np.bincount(getattr(prepared, split).labels.numpy(), minlength=len(prepared.class_names))
            for split in ("train", "val", "test")}
    return pd.DataFrame(rows, index=prepared.class_names)


# ----------------------------------------------------------------------------- classifier
def new_classifier(params: dict, name: str, prepared: PreparedData, pretrained: bool = False):
    """An untrained classifier for the experiment (the architecture and sizes it declares)."""
    exp = params["experiments"][name]
    return models.build_model(exp["architecture"], len(prepared.class_names), prepared.in_channels,
                              exp["image_size"], prepared.mean, prepared.std, pretrained=pretrained)


def load_classifier(params: dict, name: str, prepared: PreparedData):
    """The trained classifier of the experiment, in eval mode."""
    model = new_classifier(params, name, prepared)
    checkpoints.load_checkpoint(ExperimentPaths(name).classifier, model, created_by="the train_classifier stage")
    return model.eval()


def run_train_classifier(params: dict, name: str) -> tuple[torch.nn.Module, dict]:
    """Train the classifier with early stopping; save it and its summary (accuracy, history)."""
    paths = ExperimentPaths(name)
    prepared = load_prepared(paths.prepared)
    cfg = params["classifier"]
    torch.manual_seed(params["seed"])  # the initial weights follow params.yaml's seed
    model = new_classifier(params, name, prepared, pretrained=cfg["pretrained"])
    start = time.perf_counter()
    history = training.train_model(
        model, prepared.train.images, prepared.train.labels, loss="cross_entropy", epochs=cfg["epochs"],
        batch_size=cfg["batch_size"], lr=cfg["lr"], seed=params["seed"], val_images=prepared.val.images,
        val_targets=prepared.val.labels, early_stopping_patience=cfg["patience"])
    seconds = time.perf_counter() - start
    model.eval()
    logits = training.predict_logits(model, prepared.test.images)
    accuracy = float((logits.argmax(1) == prepared.test.labels).float().mean())
    summary = {"experiment": name, "accuracy": accuracy, "n_test": len(prepared.test),
               "n_train": len(prepared.train), "classes": prepared.class_names,
               "train_seconds": seconds, "best_epoch": history.best_epoch,
               "stopped_early": history.stopped_early, "train_loss": history.train_loss,
               "val_loss": history.val_loss, "val_accuracy": history.val_accuracy}
    checkpoints.save_checkpoint(paths.classifier, model, {"experiment": name, "accuracy": accuracy})
    write_json(paths.classifier_summary, summary)
    return model, summary


# ----------------------------------------------------------------------------- support models
@dataclass
class SupportSet:
    """One set of K support models and the distancing that trained it.

    ``name`` names its folder; ``target`` is the class it explains (one_vs_all) or None (every
    image, for a pair or a split).
    """

    name: str
    strategy: str
    pair: tuple[int, int] | None = None
    cls: int | None = None
    groups: tuple[list[int], list[int]] | None = None
    target: int | None = None


def support_sets(experiment: dict, class_names: list[str]) -> list[SupportSet]:
    """The support-model sets an experiment trains: one for a pair or a split, one per target class
    for One vs. All. Split groups ``"auto"`` are resolved later, from the logits (2-means)."""
    strategy = experiment["strategy"]
    if strategy == "pair":
        return [SupportSet("pair", "pair", pair=(0, 1))]
    if strategy == "one_vs_all":
        sets = []
        for cls in experiment["target_classes"]:
            index = _class_index(cls, class_names)
            sets.append(SupportSet(f"one_vs_all_{index}", "one_vs_all", cls=index, target=index))
        return sets
    groups = experiment["groups"]
    if groups == "auto":
        return [SupportSet("split_auto", "split")]
    resolved = tuple([_class_index(c, class_names) for c in group] for group in groups)
    return [SupportSet("split", "split", groups=resolved)]


def _class_index(cls, class_names: list[str]) -> int:
    if isinstance(cls, int) and 0 <= cls < len(class_names):
        return cls
    if cls in class_names:
        return class_names.index(cls)
    raise ValueError(f"class {cls!r} is not among the experiment's classes {class_names}")


def alpha_schedule(params: dict) -> list[float]:
    """The α schedule actually used: params ``support.alphas`` times ``support.alpha_scale``."""
    return [a * params["support"]["alpha_scale"] for a in params["support"]["alphas"]]


def run_train_support(params: dict, name: str) -> tuple[dict[str, list], pd.DataFrame]:
    """Train every support set of the experiment (resuming finished models), save the fidelity table."""
    paths = ExperimentPaths(name)
    prepared = load_prepared(paths.prepared)
    device = training.select_device()
    original = load_classifier(params, name, prepared).to(device)
    cfg = params["support"]
    alphas = alpha_schedule(params)
    trained, rows = {}, []
    sets = support_sets(params["experiments"][name], prepared.class_names)
    _remove_unused_support_sets(paths.support_dir, {spec.name for spec in sets})
    for spec in sets:
        groups = spec.groups
        if spec.strategy == "split" and groups is None:
            logits = training.predict_logits(original, prepared.train.images)
            groups = two_means_split(logits, prepared.train.labels, seed=params["seed"])
        start = time.perf_counter()
        support.train_support_models(
            original, prepared.train.images, prepared.train.labels, alphas=alphas, strategy=spec.strategy,
            pair=spec.pair, cls=spec.cls, groups=groups, init=cfg["init"], epochs=cfg["epochs"], lr=cfg["lr"],
            batch_size=cfg["batch_size"], seed=params["seed"], device=device,
            checkpoint_dir=paths.support_dir / spec.name)
        seconds = time.perf_counter() - start
        # Reloaded from the checkpoints, so a resumed run reports exactly what a fresh one would.
        supports, metas = support.load_support_models(paths.support_dir / spec.name, original, alphas)
        fidelity = support.support_fidelity(
            original, supports, alphas, prepared.test.images, prepared.test.labels, strategy=spec.strategy,
            pair=spec.pair, cls=spec.cls, groups=groups, spread=metas[0].get("spread"),
            final_losses=[m.get("final_loss") for m in metas])
        for model_index, row in enumerate(fidelity):
            rows.append({"experiment": name, "support_set": spec.name, "model": model_index, **row,
                         "train_seconds": seconds})
        trained[spec.name] = supports
    table = pd.DataFrame(rows)
    write_text(paths.fidelity, table.to_csv(index=False))
    return trained, table


def _remove_unused_support_sets(support_dir, names: set[str]) -> None:
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


def load_supports(params: dict, name: str, original, spec: SupportSet) -> list:
    """The K trained support models of one support set, in eval mode, where the original is."""
    folder = ExperimentPaths(name).support_dir / spec.name
    supports, _ = support.load_support_models(folder, original, alpha_schedule(params))
    return supports


# ----------------------------------------------------------------------------- attribution
def explained_images(params: dict, prepared: PreparedData, original, spec: SupportSet) -> torch.Tensor:
    """Indices of the held-out test images a support set explains, chosen deterministically.

    A pair or a split explains a class-balanced sample of ``attribution.n_images`` test images; a
    One vs. All set explains that many test images the original predicts as its target class.
    """
    n = params["attribution"]["n_images"]
    labels = prepared.test.labels
    if spec.target is not None:
        predicted = training.predict_logits(original, prepared.test.images).argmax(1)
        candidates = torch.nonzero(predicted == spec.target).flatten()
        order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(params["seed"]))
        return torch.sort(candidates[order[:n]]).values
    per_class = math.ceil(n / len(prepared.class_names))
    chosen = subsample_per_class(labels, per_class, params["seed"])
    order = torch.randperm(len(chosen), generator=torch.Generator().manual_seed(params["seed"]))
    return torch.sort(chosen[order[:n]]).values


def run_attribute(params: dict, name: str) -> pd.DataFrame:
    """Explain the chosen test images with every method, original and GAD; save one file per method.

    Returns the cost per method (seconds, images), also saved as attribution_cost.csv.
    """
    paths = ExperimentPaths(name)
    prepared = load_prepared(paths.prepared)
    original = load_classifier(params, name, prepared).to(training.select_device())
    cfg = params["attribution"]
    cost = []
    for method in cfg["methods"]:
        torch.manual_seed(params["seed"])  # SmoothGrad's noise: the seed's, whatever ran before
        parts = []
        for set_index, spec in enumerate(support_sets(params["experiments"][name], prepared.class_names)):
            supports = load_supports(params, name, original, spec)
            index = explained_images(params, prepared, original, spec)
            if len(index) == 0:
                continue
            images = prepared.test.images[index].to(models.model_device(original))
            gad = attr.GAD(method, original, supports, importance=cfg["importance"],
                           threshold_mode=cfg["threshold_mode"], q=cfg["q"], tau=cfg["tau"],
                           min_agreement=cfg["min_agreement"], batch_size=cfg["batch_size"],
                           internal_batch_size=cfg["internal_batch_size"], fast=cfg["fast"])
            kwargs = {"n_steps": cfg["n_steps"]} if method == "IntegratedGradients" else {}
            start = time.perf_counter()
            result = gad.attribute_detailed(images, target=spec.target, **kwargs)
            seconds = time.perf_counter() - start
            targets = _targets(original, images, spec.target)
            # Plain Captum on the original model alone, on the same images: GAD's cost is quoted
            # against it (the benchmark's ratio, here under the pipeline's own settings).
            start = time.perf_counter()
            attr.attribute(method, original, images, targets.to(images.device), batch_size=cfg["batch_size"],
                           internal_batch_size=cfg["internal_batch_size"], n_steps=cfg["n_steps"])
            plain_seconds = time.perf_counter() - start
            parts.append({"index": index.numpy(), "images": images.cpu().numpy(), "targets": targets.cpu().numpy(),
                          "labels": prepared.test.labels[index].numpy(),
                          "support_set": np.full(len(index), set_index),
                          "importance": result.importance.cpu().numpy(), "masks": result.masks.cpu().numpy(),
                          "consistency": result.consistency.cpu().numpy(), "gad": result.gad.cpu().numpy(),
                          "gad_importance": pixel_importance(result.gad, cfg["importance"]).cpu().numpy()})
            cost.append({"method": method, "support_set": spec.name, "images": len(index),
                         "models": len(supports) + 1, "seconds": seconds,
                         "seconds_per_image": seconds / len(index), "plain_seconds": plain_seconds,
                         "plain_seconds_per_image": plain_seconds / len(index),
                         "gad_over_plain": seconds / plain_seconds})
        arrays = {key: np.concatenate([p[key] for p in parts], axis=1 if key in ("importance", "masks") else 0)
                  for key in parts[0]}
        save_arrays(paths.attributions(method), **arrays)
    cost = pd.DataFrame(cost)
    write_text(paths.attribution_cost, cost.to_csv(index=False))
    return cost


def _targets(model, images: torch.Tensor, target: int | None) -> torch.Tensor:
    if target is not None:
        return torch.full((len(images),), int(target), dtype=torch.int64)
    return training.predict_logits(model, images).argmax(1).cpu()


def load_attributions(name: str, method: str) -> dict[str, np.ndarray]:
    """What :func:`run_attribute` saved for one method."""
    return load_arrays(ExperimentPaths(name).attributions(method))


# ----------------------------------------------------------------------------- hull metrics
def run_hull_metrics(params: dict, name: str, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Hull complexity, RC and occlusion sensitivity per image and method; save table and summary."""
    paths = ExperimentPaths(name)
    prepared = load_prepared(paths.prepared)
    original = load_classifier(params, name, prepared)
    regions, sens = params["regions"], params["sensitivity"]
    tables = []
    for method in params["attribution"]["methods"]:
        saved = load_attributions(name, method)
        other = None
        if sens["score"] == "margin":
            other = 1 - saved["targets"] if len(prepared.class_names) == 2 else None
        table = evaluate_maps(
            original, torch.from_numpy(saved["images"]), torch.from_numpy(saved["targets"]),
            saved["importance"][0], saved["gad_importance"], method=method,
            threshold_mode=regions["threshold_mode"], q=regions["q"], tau=regions["tau"],
            dilation=regions["dilation"], min_pixels=regions["min_pixels"], fill=sens["fill"],
            mean=prepared.mean, blur_sigma=sens["blur_sigma"], score_mode=sens["score"], other=other,
            rng=np.random.default_rng(params["seed"]), progress=progress, image_ids=saved["index"])
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    table.insert(0, "experiment", name)
    summary = summarize(table)
    write_text(paths.hull_metrics, table.to_csv(index=False))
    write_json(paths.summary, summary)
    return table, summary


def pixel_mean_std(name: str) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the experiment's training images (the occlusion's "mean" fill)."""
    prepared = load_prepared(ExperimentPaths(name).prepared)
    return prepared.mean, prepared.std
