"""Experiment: GAD's K+1 models evaluated together, as one vectorised network (``torch.func``).

``gadlib.method.batched`` runs the models one after the other, each on large batches. Here the
models' parameters are stacked and ``vmap`` runs every model on the same rows in one pass: the first
convolution (shared input, stacked weights) becomes one convolution with (K+1) x the output
channels, the later ones grouped convolutions. Whether that beats large batches per model depends on
the device's grouped-convolution kernels; ``bench.py --sections stacked`` measures it against the
sequential fast path with the same precision, and the agreement between the two. Integrated
Gradients with a zero baseline only; the models must share one architecture (no batch norm in
training mode; fold it first, as the benchmark does).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence

import torch
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import nn
from torch.func import functional_call, grad, vmap


def stacked_integrated_gradients(
    models: Sequence[nn.Module],
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    n_steps: int = 50,
    ig_method: str = "gausslegendre",
    rows_per_pass: int = 1024,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Integrated Gradients (zero baseline) of every model, all models in each forward/backward pass.

    Parameters
    ----------
    models : M eval-mode modules of one architecture, on the inputs' device.
    inputs : (N, C, H, W) images.
    target : (N,) output index per image.
    n_steps, ig_method : as Captum's (the step sizes and alphas are Captum's).
    rows_per_pass : model-rows per pass, i.e. M x images x steps; a pass holds at least one step.
    autocast_dtype, channels_last : as in :func:`accelerated.attribute_models` (bench/accelerated.py).

    Returns
    -------
    (M, N, C, H, W) tensor in the inputs' dtype.
    """
    if any(model.training for model in models):
        raise ValueError("stacked_integrated_gradients needs eval-mode models (call .eval())")
    params, buffers = _stacked(models, "named_parameters"), _stacked(models, "named_buffers")
    skeleton = copy.deepcopy(models[0]).to("meta")
    step_sizes_of, alphas_of = approximation_parameters(ig_method)
    step_sizes = torch.tensor(step_sizes_of(n_steps), dtype=inputs.dtype, device=inputs.device)
    alphas = torch.tensor(alphas_of(n_steps), dtype=inputs.dtype, device=inputs.device)
    n_models, n_images = len(models), inputs.shape[0]
    row_shape = tuple(inputs.shape[1:])
    extra = (1,) * len(row_shape)

    def score(p, b, x, t):
        autocast = (
            torch.autocast(device_type=x.device.type, dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            outputs = functional_call(skeleton, (p, b), (x,))
        return outputs.gather(1, t.unsqueeze(1)).to(x.dtype).sum()

    # the rows are shared (in_dims None), the parameters stacked: one gradient per model
    per_model_gradients = vmap(grad(score, argnums=2), in_dims=(0, 0, None, None))
    steps_per_pass = max(1, rows_per_pass // (n_models * n_images))
    total = torch.zeros((n_models,) + tuple(inputs.shape), dtype=inputs.dtype, device=inputs.device)
    for first in range(0, n_steps, steps_per_pass):
        k = min(steps_per_pass, n_steps - first)
        rows = (alphas[first : first + k].view((k, 1) + extra) * inputs.unsqueeze(0)).reshape(
            (k * n_images,) + row_shape
        )
        if channels_last:
            rows = rows.contiguous(memory_format=torch.channels_last)
        gradients = per_model_gradients(params, buffers, rows, target.repeat(k))
        weights = step_sizes[first : first + k].view((1, k, 1) + extra)
        total += (gradients.view((n_models, k, n_images) + row_shape) * weights).sum(dim=1)
    return total * inputs.unsqueeze(0)


def _stacked(models: Sequence[nn.Module], kind: str) -> dict[str, torch.Tensor]:
    """Each parameter (or buffer) of the models stacked along a new first axis, without gradients.

    (``torch.func.stack_module_state`` wants one class, and every ``torch.fx`` fold is a class of its own.)
    """
    named = [dict(getattr(model, kind)()) for model in models]
    if any(names.keys() != named[0].keys() for names in named):
        raise ValueError("the models do not share one architecture (their parameter names differ)")
    # contiguous: stacked channels_last weights make vmap fall back to a loop over the models
    return {name: torch.stack([names[name].detach().contiguous() for names in named]) for name in named[0]}
