"""Models run for inference: eval mode for a block, and the caller's flags again afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def evaluation_mode(*models: nn.Module, freeze_parameters: bool = False, no_grad: bool = False) -> Iterator[None]:
    """Run the block with every model in eval mode (batch norm on running statistics, no dropout).

    Parameters
    ----------
    models : the modules to switch; each submodule's own training flag is restored afterwards, so a
        model that was partly in eval mode comes back as it was.
    freeze_parameters : also switch ``requires_grad`` off for every parameter (gradients with respect
        to the inputs only, none accumulated in the weights); each flag is restored afterwards.
    no_grad : also run the block without autograd (``torch.no_grad``).
    """
    modes = {id(module): (module, module.training) for model in models for module in model.modules()}
    flags = (
        {id(param): (param, param.requires_grad) for model in models for param in model.parameters()}
        if freeze_parameters
        else {}
    )
    try:
        for model in models:
            model.eval()
        for param, _ in flags.values():
            param.requires_grad_(False)
        with torch.no_grad() if no_grad else contextlib.nullcontext():
            yield
    finally:
        for module, training in modes.values():
            module.training = training
        for param, flag in flags.values():
            param.requires_grad_(flag)
