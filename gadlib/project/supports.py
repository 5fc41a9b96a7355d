"""One experiment's support sets (GAD's and the α = 0 control) and GAD with params.yaml's settings."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch

from gadlib.method.gad import GAD
from gadlib.method.support import load_support_models
from gadlib.project.params import AttributionParams, Experiment, Params
from gadlib.project.paths import ExperimentPaths

CONTROL = "alpha0"  # the support set trained without distancing


@dataclass(frozen=True)
class SupportSet:
    """One set of K support models and the distancing that trained it.

    ``name`` names its folder; ``target`` is the class it explains (one_vs_all) or None (every
    image, for a pair or a split); ``distancing`` is False for the control trained with α = 0.
    """

    name: str
    strategy: str
    pair: tuple[int, int] | None = None
    cls: int | None = None
    groups: tuple[list[int], list[int]] | None = None
    target: int | None = None
    distancing: bool = True

    def alphas(self, params: Params) -> list[float]:
        """The set's α schedule: params' (``support.alphas`` × ``alpha_scale``), or K zeros for the control."""
        schedule = params.support.alpha_schedule
        return schedule if self.distancing else [0.0] * len(schedule)


def trained_sets(params: Params, name: str, class_names: list[str]) -> list[SupportSet]:
    """Every support set the experiment trains: :func:`support_sets`, then the distancing control
    (``support.alpha0_control``; not when ``alpha_scale`` is 0, where GAD's own set has α = 0)."""
    sets = support_sets(params.experiments[name], class_names)
    if params.support.alpha0_control and params.support.alpha_scale > 0:
        sets.append(replace(sets[0], name=CONTROL, target=None, distancing=False))
    return sets


def support_sets(experiment: Experiment, class_names: list[str]) -> list[SupportSet]:
    """The support-model sets an experiment trains: one for a pair or a split, one per target class
    for One vs. All. Split groups ``"auto"`` are resolved later, from the logits (2-means)."""
    if experiment.strategy == "pair":
        return [SupportSet("pair", "pair", pair=(0, 1))]
    if experiment.strategy == "one_vs_all":
        indices = [_class_index(cls, class_names) for cls in experiment.target_classes]
        return [SupportSet(f"one_vs_all_{i}", "one_vs_all", cls=i, target=i) for i in indices]
    if experiment.groups == "auto":
        return [SupportSet("split_auto", "split")]
    resolved = tuple([_class_index(c, class_names) for c in group] for group in experiment.groups)
    return [SupportSet("split", "split", groups=resolved)]


def _class_index(cls, class_names: list[str]) -> int:
    if isinstance(cls, int) and 0 <= cls < len(class_names):
        return cls
    if cls in class_names:
        return class_names.index(cls)
    raise ValueError(f"class {cls!r} is not among the experiment's classes {class_names}")


def load_supports(params: Params, name: str, original: torch.nn.Module, spec: SupportSet) -> list:
    """The K trained support models of one support set, in eval mode, where the original is."""
    folder = ExperimentPaths(name).support_dir / spec.name
    supports, _ = load_support_models(folder, original, spec.alphas(params))
    return supports


def gad_for(method: str, original: torch.nn.Module, supports: list, attribution: AttributionParams) -> GAD:
    """GAD for one method with the fusion settings of params.yaml's ``attribution`` section."""
    return GAD(
        method,
        original,
        supports,
        importance=attribution.importance,
        threshold_mode=attribution.threshold_mode,
        q=attribution.q,
        tau=attribution.tau,
        min_agreement=attribution.min_agreement,
        batch_size=attribution.batch_size,
        internal_batch_size=attribution.internal_batch_size,
        fast=attribution.fast,
    )


def method_kwargs(method: str, attribution: AttributionParams) -> dict:
    """The method's own arguments from params.yaml: Integrated Gradients' number of steps."""
    return {"n_steps": attribution.n_steps} if method == "IntegratedGradients" else {}


# Warnings that every run gives for what a method is, not for a fault: Captum says at each
# GuidedBackprop call that it hooks the ReLUs (that is the method). Every other warning is shown.
EXPECTED_WARNINGS = ("Setting backward hooks on ReLU activations",)


@contextlib.contextmanager
def expected_warnings_hidden() -> Iterator[None]:
    """Inside the ``with`` block, the :data:`EXPECTED_WARNINGS` are not shown."""
    with warnings.catch_warnings():
        for message in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        yield
