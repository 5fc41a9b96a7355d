"""Integrated Gradients, Saliency and InputXGradient for several models of one architecture, batched.

GAD explains the original model and K support models with one attribution method on the same
images. Captum explains one model per call. This module runs every model over all (step, image)
rows of Integrated Gradients in as few large forward/backward passes as memory allows, computes
gradients with respect to the inputs only (never the weights), and offers four accelerations on
top: bfloat16 autocast, channels_last memory layout, batch-norm folding, and for Integrated
Gradients the affine stem (the normalisation and first convolution, which are affine in the
input, run once per image instead of once per step).

The models are evaluated one after the other, each on large batches: once a batch fills the device,
stacking several models into one vectorised pass (``torch.func.vmap``) turns their convolutions into
grouped convolutions, which round differently and ran GAD-IG at 0.6x the speed of this module on the
CPU (``bench/stacked.py``, ``bench/bench.py --sections stacked``; the GPU check measures it too).

Agreement with Captum is the contract. With the default settings (the input dtype, no autocast, no
channels_last, no folding, no affine stem) the result is Captum's, up to the order of a
floating-point sum:

- ``relative_error(ours, captum) <= 1e-5`` for each model, where
  ``relative_error(a, b) = ||a - b||_F / ||b||_F`` (measured: below 1e-6, 0 when the batching matches), and
- elementwise ``|ours - captum| <= 1e-4 * |captum| + 1e-5 * max|captum|``.

The accelerations use other kernels and another (equivalent) order of operations, which round
differently. Along the IG path, an input near a tie of a max-pool or a ReLU then sends its gradient
to another pixel, so single pixels differ while the maps stay the same: ``fold_batchnorm``,
``affine_stem`` and ``channels_last`` agree to a relative error of 1e-7 to 1.2e-3 (measured; tested
bound 2e-3). bfloat16 autocast (8-bit mantissa) flips many more ReLUs: on random-weight ResNet18s
the relative error is 0.1 to 0.2 (tested bound 0.4) and the top-10% pixel masks that GAD thresholds
overlap with an IoU of about 0.86; the benchmark (``bench/bench.py``) reports both for its models.
float16 autocast (10-bit mantissa, the same tensor-core rate as bfloat16 on recent GPUs) stays
closer: relative error 0.04 to 0.06 on the same networks (tested bound 0.15), top-10% IoU 0.92 to 0.96.
"""

from __future__ import annotations

import contextlib
import copy
import operator
import warnings
from collections.abc import Iterator, Sequence

import torch
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS, approximation_parameters
from torch import nn

from gadlib.choices import BATCHED_METHODS
from gadlib.common.memory import is_out_of_memory, warn_out_of_memory
from gadlib.common.progress import tqdm

# Memory for one forward/backward pass when nothing better is known: on the CPU a fixed budget,
# so the default does not depend on what else the machine is doing; on CUDA a share of free memory.
CPU_MEMORY_BUDGET_BYTES = 1 << 30
CUDA_MEMORY_FRACTION = 0.6
# Autograd keeps about every leaf module's output for the backward pass (measured on the CPU: 0.7x to
# 1.5x their bytes for VGG16, ResNet18 and a small CNN); the factor leaves room for the gradient
# buffers and cuDNN workspaces.
ACTIVATION_OVERHEAD = 2.0
MAX_INTERNAL_BATCH = 8192


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
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    fold_batchnorm: bool = False,
    affine_stem: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Attribute the same inputs and targets with one method for each of several models.

    Parameters
    ----------
    method_name : ``"IntegratedGradients"``, ``"Saliency"`` (absolute gradient, as Captum's default
        ``abs=True``) or ``"InputXGradient"``. Other methods: use Captum (``gadlib.method.gad``).
    models : M modules mapping (B, C, H, W) inputs to (B, num_classes) outputs, on the inputs'
        device. Each is evaluated in eval mode with its parameters' ``requires_grad`` off; both are
        restored afterwards, and the weights are never modified.
    inputs : (N, C, H, W) float tensor (any (N, ...) shape works without ``channels_last``).
    target : output index to explain: one int for every input, or (N,) ints.
    baselines : Integrated Gradients' starting point: ``None`` (zeros), a number, or a tensor that
        broadcasts to ``inputs`` ((N, C, H, W) or (1, C, H, W)). Ignored by the other methods.
    n_steps, ig_method : Integrated Gradients' number of steps and Captum's approximation method
        (``"gausslegendre"``, ``"riemann_left"``, ``"riemann_right"``, ``"riemann_middle"``,
        ``"riemann_trapezoid"``); step sizes and alphas come from Captum, so results match it.
    internal_batch_size : rows (step x image pairs) per forward/backward pass; ``None`` picks it
        with :func:`auto_internal_batch_size`. On out-of-memory it is halved (down to 1) with a warning.
    autocast_dtype : e.g. ``torch.bfloat16``: run the forward passes under autocast (the gradients
        and their sum stay in the inputs' dtype). ``None``: no autocast.
    channels_last : pass 4-d inputs (and folded models) in channels_last memory layout.
    fold_batchnorm : fold each eval-mode BatchNorm into the convolution before it, in a copy of the
        model (same function, fewer operations). Falls back to the model as is, with a warning,
        when ``torch.fx`` cannot trace it. The copy is made on every call (tens of ms for a ResNet18);
        to attribute many batches, fold once with :func:`fold_batchnorm_copy` and pass the copies.
    affine_stem : Integrated Gradients only: run the model's affine stem (normalisation, first
        convolution and its batch norm, up to the first ReLU; :func:`split_affine_stem`) once per
        image instead of once per step, and backpropagate through it once per image. Models that
        cannot be split are run whole.
    progress : show a progress bar over all rows of all models.

    Returns
    -------
    (M, N, C, H, W) tensor in the inputs' dtype and device: ``result[m]`` is the attribution of
    ``models[m]``, shaped like ``inputs``.
    """
    _check_method(method_name)
    models = _check_models(models)
    _check_inputs(inputs)
    inputs = inputs.detach()  # the result is a plain tensor, even for inputs that require grad
    target_rows = _target_tensor(target, inputs)
    is_ig = method_name == "IntegratedGradients"
    if is_ig:
        base = _baseline_tensor(baselines, inputs)
        step_sizes, alphas = _ig_parameters(ig_method, n_steps, inputs)
    if internal_batch_size is not None and (
        isinstance(internal_batch_size, bool) or not isinstance(internal_batch_size, int)
        or internal_batch_size < 1
    ):
        raise ValueError(f"internal_batch_size must be a positive int or None; got {internal_batch_size!r}")
    if channels_last and inputs.dim() != 4:
        raise ValueError(f"channels_last needs (N, C, H, W) inputs; got shape {tuple(inputs.shape)}")
    _check_devices(models, inputs.device)

    n_images = inputs.shape[0]
    rows_per_model = n_images * n_steps if is_ig else n_images
    result = torch.empty((len(models),) + tuple(inputs.shape), dtype=inputs.dtype, device=inputs.device)
    with _evaluation_mode(models):
        batch = internal_batch_size
        if batch is None:
            batch = auto_internal_batch_size(models[0], tuple(inputs.shape[1:]), inputs.device,
                                             autocast_dtype=autocast_dtype)
        runner = _PassRunner(batch, autocast_dtype, channels_last)
        bar = tqdm(total=len(models) * rows_per_model, desc=f"{method_name} x {len(models)} models",
                   disable=not progress, leave=False)
        with bar:
            for index, model in enumerate(models):
                work_model = _prepare_model(model, fold_batchnorm, channels_last)
                if is_ig:
                    result[index] = _integrated_gradients(runner, work_model, inputs, base, target_rows,
                                                          step_sizes, alphas, bar, affine_stem)
                else:
                    gradients = _gradients(runner, work_model, inputs, target_rows, bar)
                    result[index] = gradients.abs() if method_name == "Saliency" else gradients * inputs
    return result


def auto_internal_batch_size(
    model: nn.Module,
    input_shape: Sequence[int],
    device: torch.device | str | None = None,
    *,
    autocast_dtype: torch.dtype | None = None,
    memory_budget_bytes: int | None = None,
    memory_fraction: float = CUDA_MEMORY_FRACTION,
    overhead: float = ACTIVATION_OVERHEAD,
    max_batch: int = MAX_INTERNAL_BATCH,
) -> int:
    """How many input rows one forward/backward pass of ``model`` can take within a memory budget.

    Heuristic: ``rows = budget // bytes_per_row``, clamped to ``[1, max_batch]``, with

    - ``bytes_per_row = overhead * (bytes of every leaf module's output for one row) + 2 * bytes of
      the row``, measured by one forward pass of a single zero row with forward hooks (under the same
      autocast, so bfloat16 halves it). Autograd keeps these outputs for the backward pass;
      ``overhead`` (2) leaves room for what hooks do not see (gradient buffers, workspaces).
    - ``budget = memory_budget_bytes`` if given; else on CUDA ``memory_fraction`` of the free memory
      (``torch.cuda.mem_get_info``), and on the CPU the fixed ``CPU_MEMORY_BUDGET_BYTES`` (1 GiB).

    It is an estimate: :func:`attribute_models` halves the batch if a pass still runs out of memory.

    Parameters
    ----------
    model : the module to run (its train/eval mode is restored after the probe).
    input_shape : shape of one input row, e.g. (C, H, W).
    device : where the passes run; ``None`` = where the model's parameters are.
    autocast_dtype : autocast dtype of the passes, or ``None``.
    memory_budget_bytes, memory_fraction, overhead, max_batch : see above.

    Returns
    -------
    int >= 1
    """
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
    row = torch.zeros((1,) + tuple(input_shape), device=device)
    activation_bytes = _leaf_output_bytes(model, row, autocast_dtype)
    bytes_per_row = overhead * activation_bytes + 2 * row.numel() * row.element_size()
    return int(max(1, min(max_batch, memory_budget_bytes // max(1.0, bytes_per_row))))


class _PassRunner:
    """Runs forward/backward passes, halving the batch size when one runs out of memory."""

    def __init__(self, batch_size: int, autocast_dtype: torch.dtype | None, channels_last: bool) -> None:
        self.batch_size = batch_size
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last
        self.target_checked = False

    def run(self, model: nn.Module, make_chunk, n_rows: int, consume) -> None:
        """Cover rows ``0 .. n_rows - 1`` in chunks: ``make_chunk(start, batch)`` returns
        ``(stop, inputs, targets)``; ``consume(start, stop, gradients)`` uses each chunk's result."""
        start = 0
        while start < n_rows:
            stop, chunk, chunk_target = make_chunk(start, self.batch_size)
            out_of_memory = False
            try:
                gradients = self._input_gradients(model, chunk, chunk_target)
            except RuntimeError as err:
                if not is_out_of_memory(err) or self.batch_size == 1:
                    raise
                out_of_memory = True
            if out_of_memory:  # outside the except block, so the failed pass's tensors are freed
                del chunk, chunk_target
                smaller = self.batch_size // 2
                warn_out_of_memory("the attribution passes", {"internal_batch_size": self.batch_size},
                                   {"internal_batch_size": smaller}, stacklevel=5)
                self.batch_size = smaller
                continue
            consume(start, stop, gradients)
            start = stop

    def _input_gradients(self, model: nn.Module, chunk: torch.Tensor,
                         chunk_target: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        chunk = chunk.detach().requires_grad_(True)
        autocast = (torch.autocast(device_type=chunk.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else contextlib.nullcontext())
        with torch.enable_grad():
            with autocast:
                outputs = model(chunk)
            if outputs.dim() != 2 or outputs.shape[0] != chunk.shape[0]:
                raise ValueError(f"a model must return (batch, num_classes) outputs; got shape "
                                 f"{tuple(outputs.shape)} for a batch of {chunk.shape[0]}")
            if not self.target_checked:  # once: an index out of range would crash a CUDA kernel
                if int(chunk_target.max()) >= outputs.shape[1]:
                    raise ValueError(f"target {int(chunk_target.max())} is out of range for a model "
                                     f"with {outputs.shape[1]} outputs")
                self.target_checked = True
            # the sum's gradient is 1 for every selected output: Captum's torch.unbind(...) gradients
            score = outputs.gather(1, chunk_target.unsqueeze(1)).to(chunk.dtype).sum()
            (gradients,) = torch.autograd.grad(score, chunk)
        return gradients


def _integrated_gradients(runner, model, inputs, base, target_rows, step_sizes, alphas, bar,
                          affine_stem: bool) -> torch.Tensor:
    """Integrated Gradients of one model: ``(inputs - base) * sum_s w_s grad F(base + a_s (inputs - base))``.

    With ``affine_stem`` the model is split into ``rest(stem(x))`` (:func:`split_affine_stem`). As the
    stem is affine, ``stem(base + a * diff) = u + a * (v - u)`` with ``u = stem(base)``, ``v = stem(inputs)``,
    and its Jacobian J is the same at every point: the steps run through ``rest`` only, and one
    backward pass through the stem per image turns ``sum_s w_s grad rest`` into ``J^T (...)``.
    """
    diff = inputs - base
    split = split_affine_stem(model) if affine_stem else None
    if split is None:
        return _path_gradient_sum(runner, model, base, diff, target_rows, step_sizes, alphas, bar) * diff
    stem, rest = split
    layout = torch.channels_last if runner.channels_last and inputs.dim() == 4 else torch.contiguous_format
    with torch.no_grad():
        start = stem(base.contiguous(memory_format=layout))
        delta = stem(inputs.contiguous(memory_format=layout)) - start
    # rows enter ``rest`` in the autocast dtype, as the stem's last output would under autocast
    summed = _path_gradient_sum(runner, rest, start, delta, target_rows, step_sizes, alphas, bar,
                                chunk_dtype=runner.autocast_dtype)
    points = inputs.detach().contiguous(memory_format=layout).requires_grad_(True)
    with torch.enable_grad():
        (gradients,) = torch.autograd.grad(stem(points), points, grad_outputs=summed.to(start.dtype))
    return gradients * diff


def _path_gradient_sum(runner, model, start_points, deltas, target_rows, step_sizes, alphas, bar,
                       chunk_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``sum_s w_s grad F(start + a_s * delta)`` over the steps; rows are (step, image), step-major.

    A chunk holds whole steps when the batch holds at least one step's images (the common case),
    otherwise part of one step; so each chunk is built and summed with slices and broadcasting,
    never with scattered indices, and the sum is deterministic. ``start + a * delta`` is Captum's
    ``baseline + alpha * (input - baseline)``, evaluated the same way.
    """
    n_images, n_steps = start_points.shape[0], len(alphas)
    row_shape = tuple(start_points.shape[1:])
    extra_dims = (1,) * len(row_shape)
    total = torch.zeros(start_points.shape, dtype=start_points.dtype, device=start_points.device)

    def make_chunk(start: int, batch: int):
        step, first = divmod(start, n_images)
        if first == 0 and batch >= n_images:
            # equal chunks (50 steps in 2 x 25, not 30 + 20): the same peak memory and shapes each pass
            remaining = n_steps - step
            k = -(-remaining // -(-remaining // (batch // n_images)))
            scale = alphas[step:step + k].view((k, 1) + extra_dims)
            chunk = start_points.unsqueeze(0) + scale * deltas.unsqueeze(0)
            chunk = chunk.reshape((k * n_images,) + row_shape)
            stop, chunk_target = start + k * n_images, target_rows.repeat(k)
        else:
            last = min(n_images, first + batch)
            chunk = start_points[first:last] + alphas[step] * deltas[first:last]
            stop, chunk_target = start + last - first, target_rows[first:last]
        return stop, chunk if chunk_dtype is None else chunk.to(chunk_dtype), chunk_target

    def consume(start: int, stop: int, gradients: torch.Tensor) -> None:
        step, first = divmod(start, n_images)
        if first == 0 and (stop - start) % n_images == 0:
            k = (stop - start) // n_images
            weights = step_sizes[step:step + k].view((k, 1) + extra_dims)
            total.add_((gradients.view((k, n_images) + row_shape) * weights).sum(dim=0))
        else:
            total[first:first + stop - start].add_(gradients * step_sizes[step])
        bar.update(stop - start)

    runner.run(model, make_chunk, n_images * n_steps, consume)
    return total


def _gradients(runner, model, inputs, target_rows, bar) -> torch.Tensor:
    """Gradient of each image's target output with respect to the image, in chunks of images."""
    result = torch.empty_like(inputs)

    def make_chunk(start: int, batch: int):
        stop = min(inputs.shape[0], start + batch)
        return stop, inputs[start:stop], target_rows[start:stop]

    def consume(start: int, stop: int, gradients: torch.Tensor) -> None:
        result[start:stop] = gradients
        bar.update(stop - start)

    runner.run(model, make_chunk, inputs.shape[0], consume)
    return result


@contextlib.contextmanager
def _evaluation_mode(models: Sequence[nn.Module]) -> Iterator[None]:
    """Eval mode and no parameter gradients for the pass; every flag is restored afterwards."""
    modes = {}
    grad_flags = {}
    for model in models:
        for module in model.modules():
            modes.setdefault(id(module), (module, module.training))
        for param in model.parameters():
            grad_flags.setdefault(id(param), (param, param.requires_grad))
    try:
        for model in models:
            model.eval()
        for param, _ in grad_flags.values():
            param.requires_grad_(False)
        yield
    finally:
        for module, training in modes.values():
            module.training = training
        for param, flag in grad_flags.values():
            param.requires_grad_(flag)


def _prepare_model(model: nn.Module, fold_batchnorm: bool, channels_last: bool) -> nn.Module:
    """The model itself, or with ``fold_batchnorm`` a folded copy (channels_last if asked)."""
    if not fold_batchnorm:
        return model  # channels_last inputs are enough for cuDNN/oneDNN to pick NHWC kernels
    folded = fold_batchnorm_copy(model)
    if folded is model:
        return model
    for param in folded.parameters():
        param.requires_grad_(False)
    if channels_last:
        folded = folded.to(memory_format=torch.channels_last)
    return folded


def fold_batchnorm_copy(model: nn.Module) -> nn.Module:
    """A copy of an eval-mode model with each BatchNorm folded into the convolution before it.

    Uses ``torch.fx.experimental.optimization.fuse`` (the model is traced with ``torch.fx``); if
    tracing fails, warns and returns ``model`` itself. The original is never modified.

    Returns
    -------
    nn.Module computing the same function (up to rounding) with fewer operations.
    """
    if model.training:
        raise ValueError("fold_batchnorm_copy needs a model in eval mode (call model.eval())")
    try:
        from torch.fx.experimental.optimization import fuse

        return fuse(model, inplace=False)
    except Exception as err:  # noqa: BLE001 - any tracing failure means: use the model unfolded
        warnings.warn(f"could not fold batch norm into convolutions ({type(err).__name__}: {err}); "
                      "using the model as is", RuntimeWarning, stacklevel=3)
        return model


def split_affine_stem(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """Split ``model`` into ``rest(stem(x))``, where ``stem`` is affine in ``x``.

    The stem is the longest chain from the input through operations that are affine in it: an
    eval-mode batch norm, a convolution or linear layer, ``nn.Identity``, and adding, subtracting,
    multiplying or dividing by a constant (a buffer or a number), each feeding only the next. For a
    gadlib model that is the normalisation and the first convolution (with its batch norm), up to
    the first ReLU. Integrated Gradients then evaluates the stem once per image instead of once per
    step (:func:`attribute_models` with ``affine_stem=True``).

    Parameters
    ----------
    model : an eval-mode module with one tensor input; traced with ``torch.fx`` (a GraphModule,
        e.g. from :func:`fold_batchnorm_copy`, is used as it is).

    Returns
    -------
    ``(stem, rest)`` GraphModules sharing the model's parameters, or ``None`` when the model cannot
    be traced or its stem holds no convolution or linear layer (nothing worth splitting).
    """
    try:
        graph_module = model if isinstance(model, torch.fx.GraphModule) else torch.fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - an untraceable model is simply not split
        return None
    modules = dict(graph_module.named_modules())
    inputs = [node for node in graph_module.graph.nodes if node.op == "placeholder"]
    if len(inputs) != 1:
        return None
    chain, current = [], inputs[0]
    while len(current.users) == 1:
        node = next(iter(current.users))
        if not _is_affine_step(node, current, modules):
            break
        chain.append(node)
        current = node
    if not any(node.op == "call_module" and isinstance(modules[node.target], _WEIGHTED_LAYERS)
               for node in chain):
        return None
    in_stem = set(chain)
    stem_graph, stem_env = torch.fx.Graph(), {}
    rest_graph, rest_env = torch.fx.Graph(), {current: None}
    rest_env[current] = rest_graph.placeholder("stem_output")
    for node in graph_module.graph.nodes:
        used_by_stem = node.op == "get_attr" and any(user in in_stem for user in node.users)
        if node.op == "placeholder" or node in in_stem or used_by_stem:
            stem_env[node] = stem_graph.node_copy(node, lambda n: stem_env[n])
        if node.op == "placeholder" or node in in_stem:
            continue
        if node.op == "get_attr" and all(user in in_stem for user in node.users):
            continue
        rest_env[node] = rest_graph.node_copy(node, lambda n: rest_env[n])
    stem_graph.output(stem_env[current])
    rest = torch.fx.GraphModule(graph_module, rest_graph)
    _no_in_place_on_input(rest, rest_env[current])
    return torch.fx.GraphModule(graph_module, stem_graph), rest


def _no_in_place_on_input(graph_module: torch.fx.GraphModule, placeholder: torch.fx.Node) -> None:
    """Make the operations that read the input out-of-place (the input is a leaf that needs its gradient).

    Only the split's own graph changes: an in-place module (``ReLU(inplace=True)``) is replaced by an
    out-of-place copy registered in ``graph_module``; the model's modules are not touched.
    """
    for user in list(placeholder.users):
        if user.op == "call_module":
            module = graph_module.get_submodule(user.target)
            if getattr(module, "inplace", False) is True:
                out_of_place = copy.copy(module)
                out_of_place.inplace = False
                name = user.target.replace(".", "_") + "_out_of_place"
                graph_module.add_submodule(name, out_of_place)
                user.target = name
        elif user.kwargs.get("inplace") is True:
            user.kwargs = {**user.kwargs, "inplace": False}
    graph_module.recompile()


_WEIGHTED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_AFFINE_FUNCTIONS = {operator.add: "add", operator.sub: "sub", operator.mul: "mul", operator.truediv: "div",
                     torch.add: "add", torch.sub: "sub", torch.mul: "mul", torch.div: "div"}
_AFFINE_METHODS = {"add": "add", "sub": "sub", "mul": "mul", "div": "div"}


def _is_affine_step(node: torch.fx.Node, current: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` is an affine function of ``current`` alone (see :func:`split_affine_stem`)."""
    if node.kwargs or not node.args:
        return False
    if node.op == "call_module":
        module = modules[node.target]
        if tuple(node.args) != (current,):
            return False
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return not module.training and module.track_running_stats
        return isinstance(module, (*_WEIGHTED_LAYERS, nn.Identity))
    if node.op == "call_function":
        kind = _AFFINE_FUNCTIONS.get(node.target)
    elif node.op == "call_method":
        kind = _AFFINE_METHODS.get(node.target)
    else:
        return False
    if kind is None or len(node.args) != 2:
        return False
    left, right = node.args
    if (left is current) == (right is current):
        return False
    other = right if left is current else left
    constant = (isinstance(other, (int, float)) and not isinstance(other, bool)) or (
        isinstance(other, torch.fx.Node) and other.op == "get_attr")
    return constant and (kind != "div" or left is current)


def _leaf_output_bytes(model: nn.Module, row: torch.Tensor, autocast_dtype: torch.dtype | None) -> int:
    """Bytes of all leaf-module outputs for one forward pass of ``row`` (eval mode, no gradients)."""
    total = 0

    def count(_module, _args, output) -> None:
        nonlocal total
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        total += sum(o.numel() * o.element_size() for o in outputs if isinstance(o, torch.Tensor))

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    was_training = {id(m): (m, m.training) for m in model.modules()}
    autocast = (torch.autocast(device_type=row.device.type, dtype=autocast_dtype)
                if autocast_dtype is not None else contextlib.nullcontext())
    try:
        model.eval()
        with torch.no_grad(), autocast:
            model(row)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in was_training.values():
            module.training = training
    return total


def _check_method(method_name: str) -> None:
    if method_name not in BATCHED_METHODS:
        raise ValueError(
            f"method {method_name!r} has no fast path; the fast path covers {BATCHED_METHODS}. "
            "Use Captum through gadlib.method.gad.attribute for other methods."
        )


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


def _check_inputs(inputs: torch.Tensor) -> None:
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
        raise TypeError(f"inputs must be a floating-point tensor; got "
                        f"{getattr(inputs, 'dtype', type(inputs).__name__)}")
    if inputs.dim() < 2 or inputs.shape[0] == 0:
        raise ValueError(f"inputs must have shape (N, C, H, W) with N >= 1; got {tuple(inputs.shape)}")


def _check_devices(models: list[nn.Module], device: torch.device) -> None:
    for index, model in enumerate(models):
        for tensor in list(model.parameters())[:1] + list(model.buffers())[:1]:
            if tensor.device != device:
                raise ValueError(f"models[{index}] is on {tensor.device} but the inputs are on {device}; "
                                 f"move it with model.to({str(device)!r})")


def _target_tensor(target, inputs: torch.Tensor) -> torch.Tensor:
    n_images = inputs.shape[0]
    if isinstance(target, bool) or target is None:
        raise ValueError(f"target must be an int or (N,) ints; got {target!r}")
    if isinstance(target, int):
        values = torch.full((n_images,), target, dtype=torch.int64)
    else:
        values = torch.as_tensor(target)
        if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
            raise ValueError(f"target must hold integer class indices; got dtype {values.dtype}")
        values = values.to(torch.int64)
        if values.dim() == 0:
            values = values.expand(n_images)
        if values.shape != (n_images,):
            raise ValueError(f"target must be an int or have shape ({n_images},); got {tuple(values.shape)}")
    if int(values.min()) < 0:
        raise ValueError(f"target holds a negative index {int(values.min())}")
    return values.to(inputs.device).contiguous()


def _baseline_tensor(baselines, inputs: torch.Tensor) -> torch.Tensor:
    if baselines is None:
        return torch.zeros_like(inputs)
    if isinstance(baselines, (int, float)) and not isinstance(baselines, bool):
        return torch.full_like(inputs, float(baselines))
    if not isinstance(baselines, torch.Tensor):
        raise TypeError(f"baselines must be None, a number or a tensor; got {type(baselines).__name__}")
    try:
        return torch.broadcast_to(baselines.to(inputs.device, inputs.dtype), inputs.shape).contiguous()
    except RuntimeError as err:
        raise ValueError(f"baselines of shape {tuple(baselines.shape)} do not broadcast to the inputs' "
                         f"shape {tuple(inputs.shape)}") from err


def _ig_parameters(ig_method: str, n_steps: int, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Captum's step sizes and alphas as tensors; step sizes in float32 first, as Captum does."""
    if ig_method not in SUPPORTED_METHODS:
        raise ValueError(f"unknown ig_method {ig_method!r}; use one of {SUPPORTED_METHODS}")
    minimum = 1 if ig_method == "gausslegendre" else 2
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < minimum:
        raise ValueError(f"n_steps must be an int >= {minimum} for {ig_method}; got {n_steps!r}")
    step_sizes_fn, alphas_fn = approximation_parameters(ig_method)
    step_sizes = torch.tensor(step_sizes_fn(n_steps)).float().to(inputs.device, inputs.dtype)
    alphas = torch.tensor(alphas_fn(n_steps), dtype=torch.float64).to(inputs.device, inputs.dtype)
    return step_sizes, alphas
