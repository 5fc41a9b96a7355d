"""Stage ``attribute``: every method on the original and every support model, fused into GAD maps."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch

from gadlib.common.atomic import save_arrays, write_text
from gadlib.data.datasets import subsample_per_class
from gadlib.data.prepared import PreparedData, load_prepared
from gadlib.method import gad as attr
from gadlib.method import support
from gadlib.method.fusion import pixel_importance
from gadlib.models import training
from gadlib.models.architectures import model_device
from gadlib.pipeline.experiment import SupportSet, load_classifier, trained_sets
from gadlib.pipeline.params import Params
from gadlib.pipeline.paths import ExperimentPaths

# Warnings that every run gives for what a method is, not for a fault: Captum says at each
# GuidedBackprop call that it hooks the ReLUs (that is the method). Every other warning is shown.
EXPECTED_WARNINGS = ("Setting backward hooks on ReLU activations",)


@contextlib.contextmanager
def expected_warnings_hidden() -> Iterator[None]:
    """Inside (or in a function it decorates), the :data:`EXPECTED_WARNINGS` are not shown."""
    with warnings.catch_warnings():
        for message in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        yield


def load_supports(params: Params, name: str, original: torch.nn.Module, spec: SupportSet) -> list:
    """The K trained support models of one support set, in eval mode, where the original is."""
    folder = ExperimentPaths(name).support_dir / spec.name
    supports, _ = support.load_support_models(folder, original, spec.alphas(params))
    return supports


def explained_images(params: Params, prepared: PreparedData, original, spec: SupportSet) -> torch.Tensor:
    """Indices of the held-out test images a support set explains, chosen deterministically.

    A pair or a split explains a class-balanced sample of ``attribution.n_images`` test images; a
    One vs. All set explains that many test images the original predicts as its target class.
    """
    n, seed = params.attribution.n_images, params.seed
    labels = prepared.test.labels
    if spec.target is not None:
        predicted = training.predict_logits(original, prepared.test.images).argmax(1)
        candidates = torch.nonzero(predicted == spec.target).flatten()
        order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))
        return torch.sort(candidates[order[:n]]).values
    per_class = math.ceil(n / len(prepared.class_names))
    chosen = subsample_per_class(labels, per_class, seed)
    order = torch.randperm(len(chosen), generator=torch.Generator().manual_seed(seed))
    return torch.sort(chosen[order[:n]]).values


@expected_warnings_hidden()
def run(params: Params, name: str) -> pd.DataFrame:
    """Explain the chosen test images with every method, original and GAD; save one file per method.

    With the distancing control (``support.alpha0_control``) the same images are also explained with
    GAD over the support models trained with α = 0 (keys ``gad_alpha0``, ``gad_alpha0_importance``,
    ``consistency_alpha0``). Returns the cost per method (seconds, images), also saved as
    attribution_cost.csv.
    """
    paths = ExperimentPaths(name)
    prepared = load_prepared(paths.prepared)
    original = load_classifier(params, name, prepared).to(training.select_device())
    cfg = params.attribution
    sets = trained_sets(params, name, prepared.class_names)
    control = next((spec for spec in sets if not spec.distancing), None)
    control_supports = None if control is None else load_supports(params, name, original, control)
    cost = []
    for method in cfg.methods:
        torch.manual_seed(params.seed)  # SmoothGrad's noise: the seed's, whatever ran before
        parts = []
        for set_index, spec in enumerate(s for s in sets if s.distancing):
            supports = load_supports(params, name, original, spec)
            index = explained_images(params, prepared, original, spec)
            if len(index) == 0:
                continue
            images = prepared.test.images[index].to(model_device(original))
            noise = torch.get_rng_state()  # the control sees the same SmoothGrad noise as GAD
            kwargs = method_kwargs(method, cfg)
            seconds, result = _timed(
                gad_for(method, original, supports, cfg).attribute_detailed, images, target=spec.target, **kwargs
            )
            # saved with the maps: spec.target, or the class the original predicts (batches of 256)
            targets = attr.resolve_target(original, images, spec.target, batch_size=256)
            # Plain Captum on the original model alone, on the same images: GAD's cost is quoted
            # against it (the benchmark's ratio, here under the pipeline's own settings).
            plain_seconds, _ = _timed(
                attr.attribute,
                method,
                original,
                images,
                targets.to(images.device),
                batch_size=cfg.batch_size,
                internal_batch_size=cfg.internal_batch_size,
                n_steps=cfg.n_steps,
            )
            part = {
                "index": index.numpy(),
                "images": images.cpu().numpy(),
                "targets": targets.cpu().numpy(),
                "labels": prepared.test.labels[index].numpy(),
                "support_set": np.full(len(index), set_index),
                "importance": result.importance.cpu().numpy(),
                "masks": result.masks.cpu().numpy(),
                "consistency": result.consistency.cpu().numpy(),
                "gad": result.gad.cpu().numpy(),
                "gad_importance": pixel_importance(result.gad, cfg.importance).cpu().numpy(),
            }
            if control_supports is not None:
                torch.set_rng_state(noise)
                control_seconds, controlled = _timed(
                    gad_for(method, original, control_supports, cfg).attribute_detailed,
                    images,
                    target=targets,
                    **kwargs,
                )
                part |= {
                    "gad_alpha0": controlled.gad.cpu().numpy(),
                    "gad_alpha0_importance": pixel_importance(controlled.gad, cfg.importance).cpu().numpy(),
                    "consistency_alpha0": controlled.consistency.cpu().numpy(),
                }
                cost.append(
                    _cost(method, control.name, len(index), len(control_supports) + 1, control_seconds, plain_seconds)
                )
            parts.append(part)
            cost.append(_cost(method, spec.name, len(index), len(supports) + 1, seconds, plain_seconds))
        arrays = {
            key: np.concatenate([p[key] for p in parts], axis=1 if key in ("importance", "masks") else 0)
            for key in parts[0]
        }
        save_arrays(paths.attributions(method), **arrays)
    cost = pd.DataFrame(cost)
    write_text(paths.attribution_cost, cost.to_csv(index=False))
    return cost


def gad_for(method: str, original, supports: list, cfg) -> attr.GAD:
    """The GAD configuration of one method with the attribution settings of params.yaml (``cfg``)."""
    return attr.GAD(
        method,
        original,
        supports,
        importance=cfg.importance,
        threshold_mode=cfg.threshold_mode,
        q=cfg.q,
        tau=cfg.tau,
        min_agreement=cfg.min_agreement,
        batch_size=cfg.batch_size,
        internal_batch_size=cfg.internal_batch_size,
        fast=cfg.fast,
    )


def method_kwargs(method: str, cfg) -> dict:
    """The method's own arguments from params.yaml: Integrated Gradients' number of steps."""
    return {"n_steps": cfg.n_steps} if method == "IntegratedGradients" else {}


def _timed(work, *args, **kwargs):
    """(seconds, result) of ``work(*args, **kwargs)``."""
    start = time.perf_counter()
    result = work(*args, **kwargs)
    return time.perf_counter() - start, result


def _cost(method: str, support_set: str, images: int, models: int, seconds: float, plain_seconds: float) -> dict:
    return {
        "method": method,
        "support_set": support_set,
        "images": images,
        "models": models,
        "seconds": seconds,
        "seconds_per_image": seconds / images,
        "plain_seconds": plain_seconds,
        "plain_seconds_per_image": plain_seconds / images,
        "gad_over_plain": seconds / plain_seconds,
    }
