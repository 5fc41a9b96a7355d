"""A Quantus ``explain_func`` built from a GAD configuration (numpy in, numpy out; Quantus not imported).

When Quantus randomises the model (MPRT), ``"randomise"`` (default) gives every support model the
randomised values of the parameters Quantus changed, ``"retrain"`` trains them again from the randomised
model (cached: use a test that randomises once, e.g. ``MPRT(skip_layers=True)``), and ``"keep"`` keeps
the trained ones, which does not test GAD (docs/method.md).
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from gadlib.common.checks import check_images
from gadlib.method.gad import GAD, resolve_target

RANDOMISATION_MODES = ("randomise", "retrain", "keep")
OUTPUTS = ("gad", "original")
# Keyword arguments Quantus adds to explain_func_kwargs (or that its own explain functions take); the
# adapter ignores them: the models' own device decides where GAD computes.
QUANTUS_KEYWORDS = frozenset({"device", "softmax", "channel_first", "model_predict_kwargs", "method"})
_CACHE_BYTES = 128 * 2**20  # maps kept for repeated calls (Quantus explains the same images again)


class QuantusExplainFunc:
    """A Quantus ``explain_func``: numpy (N, C, H, W) images and (N,) targets in, numpy maps out.

    ``gad``: the GAD configuration; ``output``: ``"gad"``, or ``"original"`` (the original model's own map
    A_0); ``randomisation``: ``"randomise"``, ``"retrain"`` or ``"keep"`` (the module's docstring), for a
    model whose weights differ from the GAD original's; ``train_images``, ``train_labels``,
    ``support_options``: for ``"retrain"``, the supports' training data and
    :func:`gadlib.method.support.train_support_models` arguments (``alphas`` at least);
    ``attribute_kwargs``: defaults of :meth:`GAD.attribute` (e.g. ``n_steps=50``) under Quantus's own.

    ``explain(model, inputs, targets, **kwargs)`` takes the GAD original or a randomised copy,
    (N, C, H, W) pixel-space images (numpy or tensor) and one class index, N or None (predicted);
    Quantus's keywords (:data:`QUANTUS_KEYWORDS`) are absorbed, the rest go to :meth:`GAD.attribute`. It
    returns a float32 numpy array shaped like ``inputs``, caching maps image by image (up to 128 MiB).

    Examples
    --------
    >>> import copy
    >>> import numpy as np
    >>> import torch
    >>> from torch import nn
    >>> from gadlib import GAD
    >>> from gadlib.evaluation.quantus_adapter import QuantusExplainFunc
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    >>> explain = QuantusExplainFunc(GAD("Saliency", model, [copy.deepcopy(model)]))
    >>> x = np.random.default_rng(0).random((2, 1, 4, 4), dtype=np.float32)
    >>> maps = explain(model=model, inputs=x, targets=np.array([0, 1]), device="cpu")  # as Quantus calls it
    >>> type(maps).__name__, maps.shape, maps.dtype
    ('ndarray', (2, 1, 4, 4), dtype('float32'))
    """

    def __init__(
        self,
        gad: GAD,
        *,
        output: str = "gad",
        randomisation: str = "randomise",
        train_images: Any = None,
        train_labels: Any = None,
        support_options: Mapping[str, Any] | None = None,
        **attribute_kwargs: Any,
    ) -> None:
        if not isinstance(gad, GAD):
            raise TypeError(f"gad must be a gadlib GAD object; got {type(gad).__name__}")
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; use one of {OUTPUTS}")
        if randomisation not in RANDOMISATION_MODES:
            raise ValueError(f"unknown randomisation {randomisation!r}; use one of {RANDOMISATION_MODES}")
        if randomisation == "retrain" and output == "gad":
            if train_images is None or train_labels is None or not support_options or "alphas" not in support_options:
                raise ValueError(
                    "randomisation='retrain' trains the support models again from the randomised model: pass "
                    "train_images, train_labels and support_options (the train_support_models arguments, "
                    "alphas at least, e.g. {'alphas': [0.5, 1, 1.5, 2, 2.5], 'pair': (k, l)})"
                )
        self.gad, self.output, self.randomisation = gad, output, randomisation
        self.train_images, self.train_labels = train_images, train_labels
        self.support_options = dict(support_options or {})
        self.attribute_kwargs = attribute_kwargs
        self._reference = {name: value.detach().cpu().clone() for name, value in gad.models[0].state_dict().items()}
        self._retrained: dict[str, list[nn.Module]] = {}
        self._results: OrderedDict[tuple, np.ndarray] = OrderedDict()  # one map per (settings, image, target)
        self._cached_bytes = 0

    def __call__(self, model: nn.Module | None = None, inputs: Any = None, targets: Any = None, **kwargs: Any):
        if inputs is None:
            raise TypeError("explain_func needs inputs: (N, C, H, W) images")
        model = self.gad.models[0] if model is None else model
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be a torch.nn.Module (Quantus passes the raw model); got {type(model).__name__}"
            )
        changed = self.changed_parameters(model)
        call_kwargs = {**self.attribute_kwargs, **{k: v for k, v in kwargs.items() if k not in QUANTUS_KEYWORDS}}
        x = torch.from_numpy(np.ascontiguousarray(inputs)) if isinstance(inputs, np.ndarray) else inputs
        check_images(x, "inputs", require_tensor=True)
        if targets is not None and not isinstance(targets, torch.Tensor):  # Quantus's numpy array or number
            targets = torch.as_tensor(np.asarray(targets))
        target = resolve_target(model, x, targets)
        keys = self._cache_keys(model, changed, x, target, call_kwargs)
        rows = {i: self._results[key] for i, key in enumerate(keys or []) if key in self._results}
        missing = [i for i in range(len(x)) if i not in rows]
        if missing:
            index = torch.tensor(missing)
            gad = self.gad_for(model, changed)
            explain = gad.attribute if self.output == "gad" else gad.attribute_original
            computed = explain(x[index.to(x.device)], target[index], **call_kwargs).detach().float().cpu().numpy()
            rows |= dict(zip(missing, computed, strict=True))
        for i, key in enumerate(keys or []):
            if key in self._results:
                self._results.move_to_end(key)
            else:
                self._remember(key, rows[i])
        return np.stack([rows[i] for i in range(len(x))])

    def changed_parameters(self, model: nn.Module) -> list[str]:
        """Names of the state entries (parameters, buffers) in which ``model`` differs from the GAD original."""
        state = model.state_dict()
        differ = sorted(set(self._reference) ^ set(state)) or [
            name for name, value in state.items() if value.shape != self._reference[name].shape
        ]
        if differ:
            raise ValueError(
                f"the model passed to the explain function does not have the GAD original's parameters "
                f"(e.g. {differ[:3]} differ); pass the original model, or a copy Quantus randomised"
            )
        return [name for name, value in state.items() if not torch.equal(value.detach().cpu(), self._reference[name])]

    def gad_for(self, model: nn.Module, changed: list[str] | None = None) -> GAD:
        """The GAD object that explains ``model``, its support models handled as ``randomisation`` says."""
        changed = self.changed_parameters(model) if changed is None else changed
        supports = self.gad.models[1:]
        if not changed and model is self.gad.models[0]:
            return self.gad
        if not changed or self.output == "original" or self.randomisation == "keep":
            return self.gad.with_models(model, supports)
        if self.randomisation == "randomise":
            state = model.state_dict()
            randomised = []
            for support in supports:
                twin = copy.deepcopy(support)
                support_state = twin.state_dict()
                for name in changed:
                    support_state[name] = state[name].detach().to(support_state[name].device).clone()
                twin.load_state_dict(support_state)
                randomised.append(twin.eval())
            return self.gad.with_models(model, randomised)
        return self.gad.with_models(model, self._retrain(model))

    def _retrain(self, model: nn.Module) -> list[nn.Module]:
        from gadlib.method.support import train_support_models  # support imports this package's gad module

        digest = _state_digest(model)
        if digest not in self._retrained:
            options = {"progress": False, **self.support_options}
            self._retrained[digest] = list(train_support_models(model, self.train_images, self.train_labels, **options))
        return self._retrained[digest]

    def _cache_keys(self, model: nn.Module, changed: list[str], x: torch.Tensor, target: torch.Tensor, kwargs: dict):
        """One cache key per image, or None when a keyword argument is not a plain value."""
        plain = (int, float, str, bool, type(None))
        if not all(isinstance(v, plain) for v in kwargs.values()):
            return None
        weights = "original" if not changed else _state_digest(model, changed)
        settings = (self.output, weights, tuple(sorted(kwargs.items())))
        return [(settings, _tensor_digest(row), int(t)) for row, t in zip(x, target.tolist(), strict=True)]

    def _remember(self, key: tuple, value: np.ndarray) -> None:
        self._results[key] = value = value.copy()  # a row of its own, not a view of a whole batch
        self._cached_bytes += value.nbytes
        while self._cached_bytes > _CACHE_BYTES and len(self._results) > 1:
            self._cached_bytes -= self._results.popitem(last=False)[1].nbytes


def _tensor_digest(value: torch.Tensor) -> str:
    value = value.detach().cpu().contiguous()
    digest = hashlib.sha1(str((value.dtype, tuple(value.shape))).encode())
    digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _state_digest(model: nn.Module, names: list[str] | None = None) -> str:
    state = model.state_dict()
    digest = hashlib.sha1()
    for name in sorted(state if names is None else names):
        digest.update(name.encode())
        digest.update(_tensor_digest(state[name]).encode())
    return digest.hexdigest()
