"""The benchmark's faster variants of the exact attribution path (``gadlib.method.batched``).

Four accelerations, each optional: autocast (bfloat16 or float16) of the forward passes,
channels_last memory layout, batch-norm folding, and for Integrated Gradients the affine stem (the
normalisation and first convolution, which are affine in the input, run once per image instead of
once per step). They are built on the exact path's extension points: a model wrapped in
:class:`Accelerated` runs its forward pass under autocast and in channels_last layout, and the
affine stem's Integrated Gradients sum the path's gradients with
:func:`gadlib.method.batched.path_gradient_sum` through the rest of the network.

The accelerations use other kernels and another (equivalent) order of operations, which round
differently: along the IG path an input near a tie of a max-pool or a ReLU then sends its gradient
to another pixel, so single pixels differ while the maps stay the same. Tested bounds of the
relative error ``||ours - exact||_F / ||exact||_F`` against the exact path
(``tests/test_bench_accelerated.py``): 2e-3 for folding, channels_last and the affine stem (0.05
for Integrated Gradients, whose path can cross such a tie at one step: 1.3e-2 seen on one CPU); 0.4 for
bfloat16 autocast (8-bit mantissa: it flips many ReLUs of a random-weight network) and 0.15 for
float16 autocast (10-bit mantissa), which is also required to stay closer than bfloat16. The
benchmark (``bench/bench.py``) reports the error and the overlap of the top-10% pixel masks for its
models.
"""

from __future__ import annotations

import copy
import operator
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from gadlib.common.modes import evaluation_mode
from gadlib.common.targets import class_indices
from gadlib.method import batched


class Accelerated(nn.Module):
    """``model`` run on inputs cast to ``input_dtype``, in channels_last layout, under autocast.

    Each option is off when None / False. The gradient with respect to the input flows back through
    the cast and the layout change, so it arrives in the caller's dtype and layout.
    """

    def __init__(
        self,
        model: nn.Module,
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        input_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.model, self.autocast_dtype = model, autocast_dtype
        self.channels_last, self.input_dtype = channels_last, input_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_dtype is not None:
            x = x.to(self.input_dtype)
        if self.channels_last and x.dim() == 4:  # enough for cuDNN/oneDNN to pick NHWC kernels
            x = x.contiguous(memory_format=torch.channels_last)
        if self.autocast_dtype is None:
            return self.model(x)
        with torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype):
            return self.model(x)


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
    """:func:`gadlib.method.batched.attribute_models` with the accelerations.

    Parameters
    ----------
    method_name, models, inputs, target, baselines, n_steps, ig_method, progress : as in
        :func:`gadlib.method.batched.attribute_models` (``progress`` is ignored on the affine-stem path).
    internal_batch_size : rows per pass; ``None`` = :func:`auto_internal_batch_size` under the same autocast.
    autocast_dtype : e.g. ``torch.bfloat16``: run the forward passes under autocast (the gradients
        and their sum stay in the inputs' dtype). ``None``: no autocast.
    channels_last : pass (N, C, H, W) inputs (and folded models) in channels_last memory layout.
    fold_batchnorm : fold each eval-mode BatchNorm into the convolution before it, in a copy of the
        model (:func:`fold_batchnorm_copy`; a model torch.fx cannot trace is used as it is, with a
        warning). The copy is made on every call: to attribute many batches, fold once and pass the copies.
    affine_stem : Integrated Gradients only: run the model's affine stem (:func:`split_affine_stem`)
        once per image instead of once per step, and backpropagate through it once per image.
        Models that cannot be split are run whole.

    Returns
    -------
    (M, N, C, H, W) tensor in the inputs' dtype and device. The models' modes, parameter flags and
    weights are left as they were.
    """
    if channels_last and inputs.dim() != 4:
        raise ValueError(f"channels_last needs (N, C, H, W) inputs; got shape {tuple(inputs.shape)}")
    models = list(models)
    with evaluation_mode(*models, freeze_parameters=True):  # folding needs eval mode
        prepared = [_folded(model, channels_last) if fold_batchnorm else model for model in models]
        if internal_batch_size is None:
            internal_batch_size = auto_internal_batch_size(
                models[0], tuple(inputs.shape[1:]), inputs.device, autocast_dtype=autocast_dtype
            )
        if method_name != "IntegratedGradients" or not affine_stem:
            wrapped = [Accelerated(model, autocast_dtype, channels_last) for model in prepared]
            return batched.attribute_models(
                method_name,
                wrapped,
                inputs,
                target,
                baselines=baselines,
                n_steps=n_steps,
                ig_method=ig_method,
                internal_batch_size=internal_batch_size,
                progress=progress,
            )
        return _affine_stem_integrated_gradients(
            prepared,
            inputs.detach(),
            target,
            baselines,
            n_steps,
            ig_method,
            internal_batch_size,
            autocast_dtype,
            channels_last,
        )


def auto_internal_batch_size(
    model: nn.Module,
    input_shape: Sequence[int],
    device: torch.device | str | None = None,
    *,
    autocast_dtype: torch.dtype | None = None,
) -> int:
    """:func:`gadlib.method.batched.auto_internal_batch_size` of ``model`` run under autocast (bfloat16 halves
    the activations, so about twice the rows fit)."""
    return batched.auto_internal_batch_size(Accelerated(model, autocast_dtype), input_shape, device)


def _affine_stem_integrated_gradients(
    models, inputs, target, baselines, n_steps, ig_method, internal_batch_size, autocast_dtype, channels_last
) -> torch.Tensor:
    """Integrated Gradients ``(inputs - base) * sum_s w_s grad F(base + a_s (inputs - base))`` per model.

    A model is split into ``rest(stem(x))`` (:func:`split_affine_stem`). As the stem is affine,
    ``stem(base + a * diff) = u + a * (v - u)`` with ``u = stem(base)``, ``v = stem(inputs)``, and its
    Jacobian J is the same at every point: the steps run through ``rest`` only, and one backward pass
    through the stem per image turns ``sum_s w_s grad rest`` into ``J^T (...)``.
    """
    target_rows = class_indices(target, len(inputs), device=inputs.device)
    base = batched.baseline_tensor(baselines, inputs)
    step_sizes, alphas = batched.integration_weights(ig_method, n_steps, inputs)
    runner = batched.PassRunner(internal_batch_size, target_rows)
    diff = inputs - base
    layout = torch.channels_last if channels_last else torch.contiguous_format
    result = torch.empty((len(models),) + tuple(inputs.shape), dtype=inputs.dtype, device=inputs.device)
    for index, model in enumerate(models):
        split = split_affine_stem(model)
        if split is None:
            whole = Accelerated(model, autocast_dtype, channels_last)
            result[index] = batched.path_gradient_sum(runner, whole, base, diff, target_rows, step_sizes, alphas) * diff
            continue
        stem, rest = split
        with torch.no_grad():
            start = stem(base.contiguous(memory_format=layout))
            delta = stem(inputs.contiguous(memory_format=layout)) - start
        # rows enter ``rest`` in the autocast dtype, as the stem's last output would under autocast
        rest = Accelerated(rest, autocast_dtype, channels_last, input_dtype=autocast_dtype)
        summed = batched.path_gradient_sum(runner, rest, start, delta, target_rows, step_sizes, alphas)
        points = inputs.contiguous(memory_format=layout).requires_grad_(True)
        with torch.enable_grad():
            (gradients,) = torch.autograd.grad(stem(points), points, grad_outputs=summed.to(start.dtype))
        result[index] = gradients * diff
    return result


def _folded(model: nn.Module, channels_last: bool) -> nn.Module:
    """A folded copy of ``model`` with frozen parameters (channels_last if asked), or the model if it cannot fold."""
    folded = fold_batchnorm_copy(model)
    if folded is model:
        return model
    folded.requires_grad_(False)
    return folded.to(memory_format=torch.channels_last) if channels_last else folded


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
        warnings.warn(
            f"could not fold batch norm into convolutions ({type(err).__name__}: {err}); using the model as is",
            RuntimeWarning,
            stacklevel=3,
        )
        return model


def split_affine_stem(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """Split ``model`` into ``rest(stem(x))``, where ``stem`` is affine in ``x``.

    The stem is the longest chain from the input through operations that are affine in it: an
    eval-mode batch norm, a convolution or linear layer, ``nn.Identity``, and adding, subtracting,
    multiplying or dividing by a constant (a buffer or a number), each feeding only the next. For a
    gadlib model that is the normalisation and the first convolution (with its batch norm), up to
    the first ReLU.

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
    if not any(node.op == "call_module" and isinstance(modules[node.target], _WEIGHTED_LAYERS) for node in chain):
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
_AFFINE_FUNCTIONS = {
    operator.add: "add",
    operator.sub: "sub",
    operator.mul: "mul",
    operator.truediv: "div",
    torch.add: "add",
    torch.sub: "sub",
    torch.mul: "mul",
    torch.div: "div",
}
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
        isinstance(other, torch.fx.Node) and other.op == "get_attr"
    )
    return constant and (kind != "div" or left is current)
