"""What the stages of one experiment share: its classifier, its support-model sets and the saved maps.

Each stage module (``prepare``, ``train_classifier``, ``train_support``, ``attribute``,
``hull_metrics``) has a ``run(params, name)`` that reads the previous stage's outputs, does its
work, writes its outputs atomically and returns what the notebook shows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from gadlib.common.atomic import load_arrays
from gadlib.data.prepared import PreparedData
from gadlib.models import checkpoints
from gadlib.models.architectures import build_model
from gadlib.pipeline.params import Experiment, Params
from gadlib.pipeline.paths import ExperimentPaths


def new_classifier(params: Params, name: str, prepared: PreparedData, pretrained: bool = False) -> torch.nn.Module:
    """An untrained classifier for the experiment (the architecture and sizes it declares)."""
    exp = params.experiments[name]
    return build_model(
        exp.architecture,
        len(prepared.class_names),
        prepared.in_channels,
        exp.image_size,
        prepared.mean,
        prepared.std,
        pretrained=pretrained,
    )


def load_classifier(params: Params, name: str, prepared: PreparedData) -> torch.nn.Module:
    """The trained classifier of the experiment, in eval mode."""
    model = new_classifier(params, name, prepared)
    checkpoints.load_checkpoint(ExperimentPaths(name).classifier, model, created_by="the train_classifier stage")
    return model.eval()


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
        sets = []
        for cls in experiment.target_classes:
            index = _class_index(cls, class_names)
            sets.append(SupportSet(f"one_vs_all_{index}", "one_vs_all", cls=index, target=index))
        return sets
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


def load_attributions(name: str, method: str) -> dict[str, np.ndarray]:
    """What the attribute stage saved for one method (see :func:`gadlib.pipeline.attribute.run`)."""
    return load_arrays(ExperimentPaths(name).attributions(method))
