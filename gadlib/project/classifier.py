"""The classifier of one experiment: built as params.yaml declares it, and loaded once trained."""

from __future__ import annotations

import torch

from gadlib.data.prepared import PreparedData
from gadlib.models import checkpoints
from gadlib.models.architectures import build_model
from gadlib.project.params import Params
from gadlib.project.paths import ExperimentPaths


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
    checkpoints.load_checkpoint(ExperimentPaths(name).classifier, model, created_by="notebooks/02_train_classifier")
    return model.eval()
