"""Attribution methods by name, and the ``GAD`` attribution class: the fused maps (:mod:`gadlib.method.fusion`)
of the original and every support model, with Captum's call shape (``NoiseTunnel`` and Captum's
visualisation take it; :func:`gadlib.plots.plot_attribution` also draws an empty map).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from captum.attr import (
    Attribution,
    GradientAttribution,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
)
from torch import nn

from gadlib.choices import BATCHED_METHODS, METHODS
from gadlib.common.batching import batch_results, is_out_of_memory
from gadlib.common.checks import (
    InputRangeWarning,
    check_finite_images,
    check_images,
    name_indices,
    non_finite_rows,
    outside_pixel_range,
    pixel_range,
    pixel_range_note,
)
from gadlib.common.modes import evaluation_mode
from gadlib.common.targets import class_indices
from gadlib.method import batched
from gadlib.method.fusion import FusionResult, check_fusion_options, fuse_maps
from gadlib.models.architectures import architecture_signature, model_device
from gadlib.models.training import predict_logits

TargetLike = int | Sequence[int] | torch.Tensor | None


def make_method(name: str, model: nn.Module) -> Attribution:
    """The Captum attribution object of a method in ``METHODS``; ``SmoothGrad`` is ``NoiseTunnel(Saliency(model))``."""
    constructors: dict[str, Callable[[nn.Module], Attribution]] = {
        "IntegratedGradients": IntegratedGradients,
        "Saliency": Saliency,
        "InputXGradient": InputXGradient,
        "GuidedBackprop": GuidedBackprop,
        "SmoothGrad": lambda m: NoiseTunnel(Saliency(m)),
    }
    if name not in constructors:
        raise ValueError(f"unknown attribution method {name!r}; use one of {METHODS}")
    return constructors[name](model)


def method_defaults(
    name: str, *, n_steps: int = 50, internal_batch_size: int = 64, nt_samples: int = 25, stdevs: float = 0.15
) -> dict[str, Any]:
    """Keyword arguments this project passes to a named method's Captum ``attribute`` call (a dict, empty
    for Saliency, InputXGradient, GuidedBackprop): Integrated Gradients' ``n_steps`` and bound on images x
    steps per pass (baseline: Captum's zero, a black image); SmoothGrad's samples and noise std (pixel units)."""
    if name not in METHODS:
        raise ValueError(f"unknown attribution method {name!r}; use one of {METHODS}")
    if name == "IntegratedGradients":
        return {"n_steps": n_steps, "internal_batch_size": internal_batch_size}
    if name == "SmoothGrad":
        return {"nt_type": "smoothgrad", "nt_samples": nt_samples, "stdevs": stdevs}
    return {}


def resolve_target(model: nn.Module, inputs: torch.Tensor, target: TargetLike, batch_size: int = 64) -> torch.Tensor:
    """The class to explain for each image, an (N,) int64 CPU tensor in [0, K).

    ``model``: (B, C, H, W) -> (B, K) logits; ``inputs``: (N, C, H, W); ``target``: one class index, N of
    them, or None: the class ``model`` predicts (NaN or infinite logits are refused, naming the images).
    """
    if target is None:
        logits = predict_logits(model, inputs, batch_size)
        if bad := non_finite_rows(logits):
            raise ValueError(
                f"the model's logits are NaN or infinite for images {name_indices(bad, len(inputs))}, so no "
                f"class can be predicted (nor explained) for them; check the model on those images"
            )
        return logits.argmax(dim=1)
    with evaluation_mode(model, no_grad=True):
        num_classes = model(inputs[:1].detach().to(model_device(model))).shape[1]
    return class_indices(target, len(inputs), num_classes=num_classes, device="cpu")


def attribute(
    name: str,
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetLike,
    *,
    batch_size: int = 64,
    internal_batch_size: int = 64,
    n_steps: int = 50,
    nt_samples: int = 25,
    stdevs: float = 0.15,
    **kwargs: Any,
) -> torch.Tensor:
    """(N, C, H, W) attribution maps, on the inputs' device, of ``model`` ((B, C, H, W) -> (B, K) logits,
    run in eval mode) with the method ``name`` (``METHODS``) for (N, C, H, W) finite pixel-space ``inputs``,
    ``batch_size`` images per call; ``target``: see :func:`resolve_target`; ``internal_batch_size``,
    ``n_steps``, ``nt_samples``, ``stdevs``: see :func:`method_defaults`; ``kwargs``: further Captum
    arguments, a tensor with one row per image (e.g. ``baselines``) batched with the inputs.
    """
    check_images(inputs, "inputs", require_tensor=True)
    check_finite_images(inputs, "inputs")
    settings = {"n_steps": n_steps, "internal_batch_size": internal_batch_size, "nt_samples": nt_samples}
    method_kwargs = {**method_defaults(name, **settings, stdevs=stdevs), **kwargs}
    targets = resolve_target(model, inputs, target, batch_size)
    with evaluation_mode(model):
        return _in_batches(
            make_method(name, model).attribute, inputs, targets, batch_size, method_kwargs, model_device(model)
        )


class GAD(GradientAttribution):
    """Gradient Artificial Distancing around any attribution method, with Captum's call shape.

    ``method``: a name from ``METHODS`` or a Captum attribution class (one instance per model); ``model``:
    the original classifier, (B, C, H, W) -> (B, K) logits; ``support_models``: a sequence (a list, even of
    one) of its K support models, with the original's parameter names and shapes (K = 0: the plain method,
    thresholded); ``importance``, ``threshold_mode``, ``q``, ``tau``, ``min_agreement``: the fusion
    (:func:`fuse_maps`); ``batch_size``, ``internal_batch_size``: images per attribution call and
    Integrated Gradients' images x steps per pass, halved on out-of-memory; ``fast``:
    :func:`gadlib.method.batched.attribute_models` (all models at once) for ``BATCHED_METHODS``.

    Images are pixel-space (N, C, H, W) values in [0, 1] (docs/library.md); others are explained with one
    :class:`~gadlib.common.checks.InputRangeWarning` per object. A model whose targeted logits do not depend
    on the input gets an all-zero map, with a warning. In ``NoiseTunnel(GAD(...))`` (SmoothGrad of the GAD
    map) ``target=None`` is each noisy copy's predicted class. For Quantus, see
    :class:`gadlib.evaluation.quantus_adapter.QuantusExplainFunc`.

    Examples
    --------
    >>> import copy
    >>> import torch
    >>> from torch import nn
    >>> from gadlib import GAD
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    >>> supports = [copy.deepcopy(model) for _ in range(2)]  # normally train_support_models(model, ...)
    >>> images = torch.rand(3, 1, 8, 8)  # pixel space, in [0, 1]
    >>> gad = GAD("IntegratedGradients", model, supports)
    >>> gad_maps = gad.attribute(images, target=0, n_steps=8)
    >>> gad_maps.shape
    torch.Size([3, 1, 8, 8])
    >>> details = gad.attribute_detailed(images, target=0, n_steps=8)
    >>> details.importance.shape  # (K + 1, N, H, W): the original, then each support model
    torch.Size([3, 3, 8, 8])
    >>> bool((gad_maps != 0).sum() <= (details.masks[0]).sum())  # GAD keeps a subset of the original's pixels
    True
    """

    def __init__(
        self,
        method: str | type[Attribution],
        model: nn.Module,
        support_models: Sequence[nn.Module],
        *,
        importance: str = "abs",
        threshold_mode: str = "quantile",
        q: float = 0.9,
        tau: float = 0.5,
        min_agreement: int | None = None,
        batch_size: int = 64,
        internal_batch_size: int = 64,
        fast: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module returning logits; got {type(model).__name__}")
        support_models = check_support_models(support_models)
        GradientAttribution.__init__(self, model)
        self.models = [model, *support_models]
        _check_same_architecture(model, support_models)
        check_fusion_options(importance, threshold_mode, q, tau, min_agreement, len(self.models))
        if batch_size < 1 or internal_batch_size < 1:
            raise ValueError(
                f"batch sizes must be >= 1; got batch_size={batch_size}, internal_batch_size={internal_batch_size}"
            )
        if isinstance(method, str):
            self._methods = [make_method(method, m) for m in self.models]
            self._defaults = method_defaults(method, internal_batch_size=internal_batch_size)
        elif isinstance(method, type) and issubclass(method, Attribution):
            self._methods = [method(m) for m in self.models]
            self._defaults = {}
        else:
            raise TypeError(f"method must be one of {METHODS} or a Captum attribution class; got {method!r}")
        # Only a method named here is known to match gadlib.method.batched's implementation.
        self._fast_method = method if fast and isinstance(method, str) and method in BATCHED_METHODS else None
        self.fusion = {"importance": importance, "threshold_mode": threshold_mode, "q": q, "tau": tau}
        self.fusion["min_agreement"] = min_agreement
        self.method, self.batch_size = method, batch_size
        sizes = {"batch_size": batch_size, "internal_batch_size": internal_batch_size}
        self._options = {**self.fusion, **sizes, "fast": fast}
        self._noted: set[str] = set()  # notes given once per object (input range, dtype)

    def with_models(self, model: nn.Module, support_models: Sequence[nn.Module]) -> GAD:
        """A GAD object with this one's method and options around other models (e.g. randomised copies)."""
        return GAD(self.method, model, support_models, **self._options)

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._methods[0].multiplies_by_inputs

    def attribute(self, inputs: torch.Tensor, target: TargetLike = None, **method_kwargs: Any) -> torch.Tensor:
        """(N, C, H, W) GAD maps on the inputs' device: the original's attribution where the models agree, 0 elsewhere.

        ``inputs``: (N, C, H, W) finite pixel-space images in [0, 1], a float tensor or numpy array (another
        float dtype than the original's is converted, with a note once); ``target``: see :func:`resolve_target`;
        ``method_kwargs``: the method's (e.g. ``n_steps``, ``baselines``) over :func:`method_defaults`
        (``return_convergence_delta=True`` is refused: a GAD map has none).
        """
        return fuse_maps(self._maps(inputs, target, method_kwargs), **self.fusion).gad

    def _attribute_noisy_copies(
        self, inputs: torch.Tensor, target: TargetLike = None, **method_kwargs: Any
    ) -> torch.Tensor:
        """:meth:`attribute` for the noisy copies that Captum's NoiseTunnel passes: no range warning."""
        return fuse_maps(self._maps(inputs, target, method_kwargs, warn_range=False), **self.fusion).gad

    # Captum's NoiseTunnel calls ``attribute.__wrapped__`` (the method under Captum's usage logger).
    attribute.__wrapped__ = _attribute_noisy_copies

    def attribute_detailed(self, inputs: torch.Tensor, target: TargetLike = None, **method_kwargs: Any) -> FusionResult:
        """Like :meth:`attribute`, but returns the whole FusionResult (per-model maps and masks)."""
        return fuse_maps(self._maps(inputs, target, method_kwargs), **self.fusion)

    def attribute_original(self, inputs: torch.Tensor, target: TargetLike = None, **method_kwargs: Any) -> torch.Tensor:
        """The original model's own map A_0: the plain method with this object's settings and checks."""
        return self._maps(inputs, target, method_kwargs, indices=[0])[0]

    def _maps(
        self,
        inputs: Any,
        target: TargetLike,
        method_kwargs: dict[str, Any],
        warn_range: bool = True,
        indices: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """(M, N, C, H, W) maps of the models at ``indices`` (default all), after every check of the inputs."""
        if method_kwargs.pop("return_convergence_delta", False):
            raise ValueError(
                "GAD has no convergence delta: its map is the original's attribution inside a mask, not a "
                "path integral of one model. For Integrated Gradients' delta of the original model, call "
                "captum.attr.IntegratedGradients(model).attribute(..., return_convergence_delta=True)."
            )
        inputs = self._checked_inputs(inputs, warn_range)
        targets = resolve_target(self.models[0], inputs, target, self.batch_size)
        # NoiseTunnel calls attribute under no_grad; the methods need gradients.
        with torch.enable_grad():
            maps = self._all_maps(inputs, targets, {**self._defaults, **method_kwargs}, indices)
        _warn_non_finite_maps(maps)
        return maps

    def _checked_inputs(self, inputs: Any, warn_range: bool) -> torch.Tensor:
        """Inputs as a finite float tensor in the original's dtype; a note once if outside [0, 1]."""
        if isinstance(inputs, np.ndarray):
            inputs = torch.from_numpy(np.ascontiguousarray(inputs))
        check_images(inputs, "inputs", require_tensor=True)
        check_finite_images(inputs, "inputs")
        dtype = next((param.dtype for param in self.models[0].parameters() if param.is_floating_point()), None)
        if dtype is not None and inputs.dtype != dtype:
            self._note_once(
                "dtype",
                f"inputs are {inputs.dtype}, the original model's parameters {dtype}: GAD converts the "
                f"inputs to {dtype} (the maps come back in {dtype})",
                UserWarning,
            )
            inputs = inputs.to(dtype)
        if warn_range and outside_pixel_range(*(bounds := pixel_range(inputs))):
            self._note_once("range", pixel_range_note("inputs", *bounds) + " (Said once per GAD object.)")
        return inputs

    def _note_once(self, key: str, message: str, category: type[Warning] = InputRangeWarning) -> None:
        if key not in self._noted:
            self._noted.add(key)
            warnings.warn(message, category, stacklevel=5)

    def _all_maps(
        self, inputs: torch.Tensor, targets: torch.Tensor, kwargs: dict[str, Any], indices: Sequence[int] | None = None
    ) -> torch.Tensor:
        """(M, N, C, H, W) maps of the models at ``indices`` (default all; 0 = the original), in eval mode."""
        indices = list(range(len(self.models)) if indices is None else indices)
        with evaluation_mode(*self.models):
            try:
                return self._maps_of(indices, inputs, targets, kwargs)
            except RuntimeError as err:
                if is_out_of_memory(err):
                    raise
                constant = [i for i in indices if not _depends_on_input(self.models[i], inputs, targets)]
                if not constant:
                    raise
            # Autograd refuses a gradient of an output that does not depend on the input; it is zero.
            names = ", ".join("the original" if i == 0 else f"support {i}" for i in constant)
            message = f"the logits of {names} do not depend on the input; their attribution maps are zero"
            warnings.warn(message, RuntimeWarning, stacklevel=4)
            maps = torch.zeros((len(indices),) + tuple(inputs.shape), dtype=inputs.dtype, device=inputs.device)
            varying = [position for position, i in enumerate(indices) if i not in constant]
            if varying:
                maps[varying] = self._maps_of([indices[p] for p in varying], inputs, targets, kwargs).to(maps.dtype)
            return maps

    def _maps_of(
        self, indices: Sequence[int], inputs: torch.Tensor, targets: torch.Tensor, kwargs: dict[str, Any]
    ) -> torch.Tensor:
        run = functools.partial(_in_batches, inputs=inputs, targets=targets, batch_size=self.batch_size, kwargs=kwargs)
        if self._fast_method is not None:
            chosen = [self.models[i] for i in indices]
            all_models = functools.partial(batched.attribute_models, self._fast_method, chosen)
            return run(all_models, device=model_device(self.models[0]), dim=1)
        return torch.stack([run(self._methods[i].attribute, device=model_device(self.models[i])) for i in indices])


def _in_batches(
    compute: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int,
    kwargs: dict[str, Any],
    device: torch.device,
    dim: int = 0,
) -> torch.Tensor:
    """``compute(chunk, target=chunk_targets, **chunk_kwargs)`` over batches of images on ``device``,
    concatenated along ``dim`` (the image axis) on the inputs' device; :func:`batch_results` halves the
    batch (and ``internal_batch_size``) on out-of-memory."""

    def result_of(start: int, sizes: dict[str, int | None]) -> tuple[int, torch.Tensor]:
        stop = min(start + sizes["batch_size"], len(inputs))
        chunk = inputs[start:stop].detach().to(device).requires_grad_(True)
        chunk_kwargs = {
            key: _batch_rows(value, start, stop, inputs).to(device) if isinstance(value, torch.Tensor) else value
            for key, value in kwargs.items()
        }
        if sizes["internal_batch_size"] is not None:  # Captum needs at least one step per image
            chunk_kwargs["internal_batch_size"] = max(sizes["internal_batch_size"], len(chunk))
        return stop, compute(chunk, target=targets[start:stop].to(device), **chunk_kwargs)

    sizes = {"batch_size": batch_size, "internal_batch_size": kwargs.get("internal_batch_size")}
    results = []
    for _, _, result in batch_results(result_of, len(inputs), sizes, during="attribution", stacklevel=3):
        results.append(result.detach().to(inputs.device))
    return torch.cat(results, dim=dim)


def _depends_on_input(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> bool:
    """Whether the targeted logits of ``model`` are computed from its input (autograd's graph)."""
    x = inputs[:1].detach().to(model_device(model)).requires_grad_(True)
    with torch.enable_grad():
        outputs = model(x)
        if not outputs.requires_grad:
            return False
        score = outputs[0, targets.unique().to(outputs.device)].sum()
        if not score.requires_grad:
            return False
        (gradient,) = torch.autograd.grad(score, x, allow_unused=True)
    return gradient is not None


def _batch_rows(value: torch.Tensor, start: int, stop: int, inputs: torch.Tensor) -> torch.Tensor:
    """The batch's rows of a per-image tensor argument; other tensors (broadcast baselines) whole."""
    if value.dim() == inputs.dim() and len(value) == len(inputs):
        return value[start:stop]
    return value


def check_support_models(support_models: Any) -> list[nn.Module]:
    """The support models as a list of modules; a sentence instead of Python's error for one model."""
    if isinstance(support_models, nn.Module) and not isinstance(support_models, nn.ModuleList):
        raise TypeError(
            f"support_models must be a sequence of models, e.g. a list (even for one support model: "
            f"[support]); got one {type(support_models).__name__}"
        )
    try:
        models = list(support_models)
    except TypeError:
        raise TypeError(
            f"support_models must be a sequence of models, e.g. a list; got {type(support_models).__name__}"
        ) from None
    for index, support in enumerate(models, start=1):
        if not isinstance(support, nn.Module):
            raise TypeError(f"support model {index} must be a torch.nn.Module; got {type(support).__name__}")
    return models


def _warn_non_finite_maps(maps: torch.Tensor) -> None:
    """Name the images and models whose (M, N, C, H, W) maps hold NaN or infinite values."""
    bad = ~torch.isfinite(maps).flatten(2).all(dim=2)  # (M, N)
    if not bool(bad.any()):
        return
    images = bad.any(dim=0).nonzero().flatten().tolist()
    which = bad.any(dim=1).nonzero().flatten().tolist()
    models = ", ".join("the original" if i == 0 else f"support {i}" for i in which)
    message = f"the attribution maps of images {name_indices(images, maps.shape[1])} hold NaN or infinite values "
    message += f"(maps of {models}), most likely from NaN or infinite logits there; they count as importance 0"
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def _check_same_architecture(model: nn.Module, support_models: Sequence[nn.Module]) -> None:
    """Support models must have the original's parameter names and shapes."""
    reference = architecture_signature(model)
    for index, support in enumerate(support_models, start=1):
        if (signature := architecture_signature(support)) == reference:
            continue
        differences = [(ours, theirs) for ours, theirs in zip(reference, signature, strict=False) if ours != theirs]
        first = differences[0] if differences else f"{len(reference)} parameters against {len(signature)}"
        raise ValueError(
            f"support model {index} does not have the original's architecture (first "
            f"difference: {first}); support models must be trained from this model"
        )
