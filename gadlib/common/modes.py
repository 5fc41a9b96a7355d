"""Models run for inference: eval mode for a block, and the caller's flags again afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def evaluation_mode(*models: nn.Module, freeze_parameters: bool = False, no_grad: bool = False) -> Iterator[None]:
    """Run the block with every model in eval mode, each submodule's flag restored afterwards; with
    ``freeze_parameters`` also every ``requires_grad`` off (restored too), with ``no_grad`` without autograd."""
    modes = {id(module): (module, module.training) for model in models for module in model.modules()}
    frozen = [param for model in models for param in model.parameters()] if freeze_parameters else []
    flags = {id(param): (param, param.requires_grad) for param in frozen}
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
