"""Integrated Gradients, Saliency and InputXGradient of several models (GAD's K + 1) on the same images,
each over all (step, image) rows in as few forward/backward passes as memory allows. The contract is
Captum's result up to the order of a floating-point sum: ``||ours - captum||_F / ||captum||_F <= 1e-5``
per model, elementwise ``|ours - captum| <= 1e-4 * |captum| + 1e-5 * max|captum|``. Inexact, faster
variants live in ``bench/accelerated.py``, on :class:`PassRunner` and :func:`path_gradient_sum`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS, approximation_parameters
from torch import nn

from gadlib.choices import BATCHED_METHODS
from gadlib.common.batching import batch_results
from gadlib.common.checks import check_batch
from gadlib.common.modes import evaluation_mode
from gadlib.common.progress import tqdm
from gadlib.common.targets import class_indices

# Memory for one forward/backward pass when nothing better is known: on the CPU a fixed budget,
# so the default does not depend on what else the machine is doing; on CUDA a share of free memory.
CPU_MEMORY_BUDGET_BYTES = 1 << 30
CUDA_MEMORY_FRACTION = 0.6
# Autograd keeps about every leaf module's output for the backward pass; the factor leaves room for
# what the forward hooks do not see (gradient buffers, cuDNN workspaces).
ACTIVATION_OVERHEAD = 2.0
MAX_INTERNAL_BATCH = 8192

# make_chunk(start, rows) -> (stop, inputs, targets) and consume(start, stop, gradients), see PassRunner.run
ChunkMaker = Callable[[int, int], tuple[int, torch.Tensor, torch.Tensor]]
ChunkConsumer = Callable[[int, int, torch.Tensor], None]


def attribute_models(
    method_name: str,
    models: Sequence[nn.Module],
    inputs: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor,
    *,
    baselines: float | torch.Tensor | None = None,
    n_steps: int = 50,
    ig_method: str = "gausslegendre",
    internal_batch_size: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """(M, N, C, H, W) attributions, in the inputs' dtype and device, of the same inputs and targets with one
    method for each of M models (``result[m]``: ``models[m]``'s).

    ``method_name``: ``"IntegratedGradients"``, ``"Saliency"`` (absolute gradient) or ``"InputXGradient"``;
    ``models``: (B, C, H, W) -> (B, num_classes) on the inputs' device, run in eval mode with frozen
    parameters (both restored); ``inputs``: an (N, C, H, W) (or (N, ...)) float tensor; ``target``: one
    output index or (N,); ``baselines``: Integrated Gradients' start, None (zeros), a number or a tensor
    broadcasting to ``inputs``; ``n_steps``, ``ig_method``: its steps and Captum's rule (step sizes and
    alphas); ``internal_batch_size``: (step, image) rows per pass (default :func:`auto_internal_batch_size`),
    halved, with a warning, on out-of-memory.
    """
    if method_name not in BATCHED_METHODS:
        raise ValueError(
            f"method {method_name!r} has no fast path; the fast path covers {BATCHED_METHODS}. "
            "Use Captum through gadlib.method.gad.attribute for other methods."
        )
    models = _check_models(models)
    check_batch(inputs, "inputs", require_tensor=True)
    inputs = inputs.detach()  # the result is a plain tensor, even for inputs that require grad
    target_rows = class_indices(target, inputs.shape[0], device=inputs.device)
    is_ig = method_name == "IntegratedGradients"
    if is_ig:
        base = baseline_tensor(baselines, inputs)
        step_sizes, alphas = integration_weights(ig_method, n_steps, inputs)
    if internal_batch_size is not None and (
        isinstance(internal_batch_size, bool) or not isinstance(internal_batch_size, int) or internal_batch_size < 1
    ):
        raise ValueError(f"internal_batch_size must be a positive int or None; got {internal_batch_size!r}")
    _check_devices(models, inputs.device)
    rows_per_model = inputs.shape[0] * (n_steps if is_ig else 1)
    result = torch.empty((len(models),) + tuple(inputs.shape), dtype=inputs.dtype, device=inputs.device)
    with evaluation_mode(*models, freeze_parameters=True):
        batch = internal_batch_size
        if batch is None:
            batch = auto_internal_batch_size(models[0], tuple(inputs.shape[1:]), inputs.device)
        runner = PassRunner(batch, target_rows)
        desc = f"{method_name} x {len(models)} models"
        with tqdm(total=len(models) * rows_per_model, desc=desc, disable=not progress, leave=False) as bar:
            for index, model in enumerate(models):
                if is_ig:
                    diff = inputs - base
                    result[index] = (
                        path_gradient_sum(runner, model, base, diff, target_rows, step_sizes, alphas, bar) * diff
                    )
                else:
                    gradients = _gradients(runner, model, inputs, target_rows, bar)
                    result[index] = gradients.abs() if method_name == "Saliency" else gradients * inputs
    return result


def auto_internal_batch_size(
    model: nn.Module,
    input_shape: Sequence[int],
    device: torch.device | str | None = None,
    *,
    memory_budget_bytes: int | None = None,
    memory_fraction: float = CUDA_MEMORY_FRACTION,
    overhead: float = ACTIVATION_OVERHEAD,
    max_batch: int = MAX_INTERNAL_BATCH,
) -> int:
    """How many input rows (an int >= 1) one forward/backward pass of ``model`` can take within a memory
    budget (``memory_budget_bytes``, else ``memory_fraction`` of the free CUDA memory or
    ``CPU_MEMORY_BUDGET_BYTES``): an estimate, ``overhead`` times each leaf module's output bytes for one
    zero row of ``input_shape`` plus twice the row's, clamped to ``[1, max_batch]``, on ``device``."""
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    if not 0.0 < memory_fraction <= 1.0:
        raise ValueError(f"memory_fraction must lie in (0, 1]; got {memory_fraction}")
    if overhead <= 0 or max_batch < 1:
        raise ValueError(f"overhead must be > 0 and max_batch >= 1; got {overhead}, {max_batch}")
    if memory_budget_bytes is None:
        if device.type == "cuda":
            free_bytes, _ = torch.cuda.mem_get_info(device)
            memory_budget_bytes = int(memory_fraction * free_bytes)
        else:
            memory_budget_bytes = CPU_MEMORY_BUDGET_BYTES
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    row = torch.zeros((1,) + tuple(input_shape), device=device, dtype=dtype)
    bytes_per_row = overhead * _leaf_output_bytes(model, row) + 2 * row.numel() * row.element_size()
    return int(max(1, min(max_batch, memory_budget_bytes // max(1.0, bytes_per_row))))


class PassRunner:
    """Forward/backward passes of models over rows in chunks, halving the chunk when one runs out of memory
    and keeping the size that fits for the later calls.

    ``internal_batch_size``: rows per pass to start with; ``targets``: every class index the passes use,
    checked against the number of outputs at the first pass (out of range would crash a CUDA kernel).
    """

    def __init__(self, internal_batch_size: int, targets: torch.Tensor) -> None:
        self.sizes: dict[str, int | None] = {"internal_batch_size": internal_batch_size}
        self.targets = targets
        self.targets_checked = False

    def run(self, model: nn.Module, make_chunk: ChunkMaker, n_rows: int, consume: ChunkConsumer) -> None:
        """Cover rows ``0 .. n_rows - 1`` in chunks: ``make_chunk(start, rows)`` gives ``(stop, inputs,
        targets)`` for at most ``rows`` rows, ``consume(start, stop, gradients)`` takes their (B, ...) gradients."""

        def gradients_of(start: int, sizes: dict[str, int | None]) -> tuple[int, torch.Tensor]:
            stop, chunk, chunk_target = make_chunk(start, sizes["internal_batch_size"])
            return stop, self.input_gradients(model, chunk, chunk_target)

        # the warning points at attribute_models' caller: run < path_gradient_sum < attribute_models
        for start, stop, gradients in batch_results(
            gradients_of, n_rows, self.sizes, during="the attribution passes", stacklevel=4
        ):
            consume(start, stop, gradients)

    def input_gradients(self, model: nn.Module, chunk: torch.Tensor, chunk_target: torch.Tensor) -> torch.Tensor:
        """(B, ...) gradient of ``model(chunk)[b, chunk_target[b]]`` with respect to ``chunk[b]``, each b."""
        chunk = chunk.detach().requires_grad_(True)
        with torch.enable_grad():
            outputs = model(chunk)
            if outputs.dim() != 2 or outputs.shape[0] != chunk.shape[0]:
                raise ValueError(
                    f"a model must return (batch, num_classes) outputs; got shape "
                    f"{tuple(outputs.shape)} for a batch of {chunk.shape[0]}"
                )
            if not self.targets_checked:
                class_indices(self.targets, len(self.targets), num_classes=outputs.shape[1])
                self.targets_checked = True
            # the sum's gradient is 1 for every selected output: Captum's torch.unbind(...) gradients
            score = outputs.gather(1, chunk_target.unsqueeze(1)).to(chunk.dtype).sum()
            (gradients,) = torch.autograd.grad(score, chunk)
        return gradients


def path_gradient_sum(
    runner: PassRunner,
    model: nn.Module,
    start_points: torch.Tensor,
    deltas: torch.Tensor,
    target_rows: torch.Tensor,
    step_sizes: torch.Tensor,
    alphas: torch.Tensor,
    bar: tqdm | None = None,
) -> torch.Tensor:
    """``sum_s w_s grad F(start + a_s * delta)`` over the steps of Integrated Gradients' path: an (N, ...)
    tensor that, times ``deltas``, is Integrated Gradients.

    ``runner`` runs the passes of ``model`` F on its ``target_rows`` ((N,) int64); ``start_points`` and
    ``deltas`` are (N, ...), the baseline and ``input - baseline``; ``step_sizes`` and ``alphas`` (S,) the
    weights and positions of the steps; ``bar`` is advanced by the rows done. Rows are (step, image),
    step-major; a chunk holds whole steps (or part of one), summed with slices: deterministic.
    """
    n_images, n_steps = start_points.shape[0], len(alphas)
    row_shape = tuple(start_points.shape[1:])
    extra_dims = (1,) * len(row_shape)
    total = torch.zeros(start_points.shape, dtype=start_points.dtype, device=start_points.device)

    def make_chunk(start: int, batch: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        step, first = divmod(start, n_images)
        if first == 0 and batch >= n_images:
            # equal chunks (50 steps in 2 x 25, not 30 + 20): the same peak memory and shapes each pass
            remaining = n_steps - step
            k = -(-remaining // -(-remaining // (batch // n_images)))
            scale = alphas[step : step + k].view((k, 1) + extra_dims)
            chunk = start_points.unsqueeze(0) + scale * deltas.unsqueeze(0)
            return start + k * n_images, chunk.reshape((k * n_images,) + row_shape), target_rows.repeat(k)
        last = min(n_images, first + batch)
        chunk = start_points[first:last] + alphas[step] * deltas[first:last]
        return start + last - first, chunk, target_rows[first:last]

    def consume(start: int, stop: int, gradients: torch.Tensor) -> None:
        step, first = divmod(start, n_images)
        if first == 0 and (stop - start) % n_images == 0:
            k = (stop - start) // n_images
            weights = step_sizes[step : step + k].view((k, 1) + extra_dims)
            total.add_((gradients.view((k, n_images) + row_shape) * weights).sum(dim=0))
        else:
            total[first : first + stop - start].add_(gradients * step_sizes[step])
        if bar is not None:
            bar.update(stop - start)

    runner.run(model, make_chunk, n_images * n_steps, consume)
    return total


def baseline_tensor(baselines: float | torch.Tensor | None, inputs: torch.Tensor) -> torch.Tensor:
    """Integrated Gradients' baselines (None = zeros, a number, or a tensor broadcast to it) shaped like
    ``inputs``, in its dtype and device."""
    if baselines is None:
        return torch.zeros_like(inputs)
    if isinstance(baselines, (int, float)) and not isinstance(baselines, bool):
        return torch.full_like(inputs, float(baselines))
    if not isinstance(baselines, torch.Tensor):
        raise TypeError(f"baselines must be None, a number or a tensor; got {type(baselines).__name__}")
    try:
        return torch.broadcast_to(baselines.to(inputs.device, inputs.dtype), inputs.shape).contiguous()
    except RuntimeError as err:
        raise ValueError(
            f"baselines of shape {tuple(baselines.shape)} do not broadcast to the inputs' shape {tuple(inputs.shape)}"
        ) from err


def integration_weights(ig_method: str, n_steps: int, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Captum's (step_sizes, alphas) for ``ig_method``: two (n_steps,) tensors in the inputs' dtype and
    device (the step sizes through float32 first, as Captum's)."""
    if ig_method not in SUPPORTED_METHODS:
        raise ValueError(f"unknown ig_method {ig_method!r}; use one of {SUPPORTED_METHODS}")
    minimum = 1 if ig_method == "gausslegendre" else 2
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < minimum:
        raise ValueError(f"n_steps must be an int >= {minimum} for {ig_method}; got {n_steps!r}")
    step_sizes_fn, alphas_fn = approximation_parameters(ig_method)
    step_sizes = torch.tensor(step_sizes_fn(n_steps)).float().to(inputs.device, inputs.dtype)
    alphas = torch.tensor(alphas_fn(n_steps), dtype=torch.float64).to(inputs.device, inputs.dtype)
    return step_sizes, alphas


def _gradients(
    runner: PassRunner, model: nn.Module, inputs: torch.Tensor, target_rows: torch.Tensor, bar: tqdm
) -> torch.Tensor:
    result = torch.empty_like(inputs)

    def make_chunk(start: int, batch: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        stop = min(inputs.shape[0], start + batch)
        return stop, inputs[start:stop], target_rows[start:stop]

    def consume(start: int, stop: int, gradients: torch.Tensor) -> None:
        result[start:stop] = gradients
        bar.update(stop - start)

    runner.run(model, make_chunk, inputs.shape[0], consume)
    return result


def _leaf_output_bytes(model: nn.Module, row: torch.Tensor) -> int:
    """Bytes of all leaf-module outputs for one forward pass of ``row`` (eval mode, no gradients)."""
    total = 0

    def count(_module, _args, output) -> None:
        nonlocal total
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        total += sum(o.numel() * o.element_size() for o in outputs if isinstance(o, torch.Tensor))

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with evaluation_mode(model, no_grad=True):
            model(row)
    finally:
        for handle in handles:
            handle.remove()
    return total


def _check_models(models: Sequence[nn.Module]) -> list[nn.Module]:
    if isinstance(models, nn.Module):  # an nn.Sequential would otherwise be read as its layers
        raise TypeError("models must be a sequence of modules; wrap a single model as [model]")
    models = list(models)
    if not models:
        raise ValueError("models is empty; pass at least one model")
    for index, model in enumerate(models):
        if not isinstance(model, nn.Module):
            raise TypeError(f"models[{index}] is a {type(model).__name__}, not an nn.Module")
    return models


def _check_devices(models: list[nn.Module], device: torch.device) -> None:
    for index, model in enumerate(models):
        for tensor in list(model.parameters())[:1] + list(model.buffers())[:1]:
            if tensor.device != device:
                raise ValueError(
                    f"models[{index}] is on {tensor.device} but the inputs are on {device}; "
                    f"move it with model.to({str(device)!r})"
                )
