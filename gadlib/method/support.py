"""Support regression models (docs/method.md): one per α step, regressing the distanced logits with MSE;
each saved ``support_{s}.pt`` carries a fingerprint of all that determines it, so a re-run reuses it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import numbers
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gadlib.choices import INIT_MODES
from gadlib.common.atomic import remove_stale_temporaries
from gadlib.common.checks import check_finite_images, check_images, name_indices, non_finite_rows
from gadlib.common.progress import tqdm
from gadlib.method.distancing import check_alpha_schedule, distancing_margin, distancing_targets, logit_spread
from gadlib.method.gad import check_support_models
from gadlib.models.checkpoints import load_checkpoint, save_checkpoint
from gadlib.models.training import predict_logits, select_device, train_model

_CHECKPOINT_NAME = re.compile(r"support_(\d+)\.pt")
_CREATED_BY = "gadlib.method.support.train_support_models (the support-model stage)"


def support_checkpoint_path(checkpoint_dir: str | os.PathLike, step: int) -> Path:
    """File of support model ``step`` (1-based) inside ``checkpoint_dir``."""
    return Path(checkpoint_dir) / f"support_{step}.pt"


def remove_surplus_checkpoints(checkpoint_dir: str | os.PathLike, n_models: int) -> list[Path]:
    """Delete ``support_{s}.pt`` for every ``s > n_models`` in ``checkpoint_dir`` (left by a run with a
    longer α schedule); other files are left alone. Returns the removed paths."""
    found = Path(checkpoint_dir).glob("support_*.pt")  # nothing if the folder does not exist
    surplus = sorted(p for p in found if (m := _CHECKPOINT_NAME.fullmatch(p.name)) and int(m.group(1)) > n_models)
    for path in surplus:
        path.unlink()
    return surplus


class SupportModels(list):
    """The K support models (a plain list of modules) and how far their training got: ``margins``,
    ``target_margins`` and ``original_margin``, mean margins (:func:`gadlib.method.distancing.distancing_margin`)
    of the supports, their targets and the original on the training images; ``margin_reached``,
    (margin − original) / (target − original) of each (1: the full α; NaN for α = 0); the ``steps`` and
    ``epochs`` each trains."""

    margin_reached: list[float]
    margins: list[float]
    target_margins: list[float]
    original_margin: float
    steps: int
    epochs: int


def train_support_models(
    original: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    alphas: Sequence[float],
    strategy: str = "pair",
    pair: Sequence[int] | None = (0, 1),
    cls: int | None = None,
    groups: tuple[Sequence[int], Sequence[int]] | None = None,
    init: str = "chained",
    epochs: int = 10,
    lr: float = 1e-4,
    batch_size: int = 128,
    min_steps: int = 80,
    min_margin_fraction: float | None = 0.8,
    seed: int = 0,
    device: torch.device | str | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
) -> SupportModels:
    """Train one support model per α of the schedule: the :class:`SupportModels`, in eval mode on ``device``
    (default :func:`gadlib.models.training.select_device`).

    ``original``: the trained classifier f, (B, C, H, W) -> (B, K) logits, left untouched; ``images``,
    ``labels``: (N, C, H, W) finite pixel-space training images in [0, 1] (tensor or array) with finite
    logits, and (N,) logit indices; ``alphas``: the schedule a_1 < ... < a_K, in units of each logit's
    spread; ``strategy``, ``pair``, ``cls``, ``groups``: :func:`gadlib.method.distancing.lowering_mask`;
    ``init``: ``"chained"`` (support s starts from support s−1) or ``"original"`` (each from f); ``epochs``,
    ``lr``, ``batch_size``: Adam on MSE, support s shuffled with seed ``seed + s``; ``min_steps``: at least
    this many optimiser steps per model (more epochs on small data; none added to the pipeline's 10 epochs
    of 1,000 images at batch 128); ``min_margin_fraction``: warn below this share of the intended margin
    gain (None: never); ``checkpoint_dir``: save ``support_{s}.pt`` there, deleting those beyond the
    schedule; ``resume``: reuse a saved model whose fingerprint matches; ``progress``: show progress bars.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from gadlib import train_support_models
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> labels = torch.arange(40) % 2
    >>> images = torch.rand(40, 1, 4, 4) * 0.5 + 0.5 * labels[:, None, None, None]  # class 1 is brighter
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    >>> supports = train_support_models(model, images, labels, alphas=[0.5, 1.0], pair=(0, 1),
    ...                                 lr=0.05, batch_size=20, progress=False)
    >>> len(supports), supports.steps  # two models, each trained 80 steps (min_steps): 40 epochs of 2 batches
    (2, 80)
    >>> [round(reached, 1) for reached in supports.margin_reached]  # both moved the classes apart by the full α
    [1.0, 1.0]
    """
    alphas = check_alpha_schedule(alphas)
    if init not in INIT_MODES:
        raise ValueError(f"unknown init {init!r}; use one of {INIT_MODES}")
    images, labels = _as_tensor(images, "images"), _as_tensor(labels, "labels")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    images = _in_model_dtype(
        check_finite_images(check_images(images, "images", require_tensor=True), "images"), original, "images"
    )
    for name, value, minimum in (("epochs", epochs, 1), ("min_steps", min_steps, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    device = select_device() if device is None else torch.device(device)
    distancing = {"pair": pair, "cls": cls, "groups": groups}
    start = copy.deepcopy(original).to(device)
    logits = predict_logits(start, images, batch_size=batch_size)
    if bad := non_finite_rows(logits):
        raise ValueError(
            f"the original's logits are NaN or infinite for images {name_indices(bad, len(images))}; "
            f"no distanced target can be built from them. Check the model on those images or remove them."
        )
    spread = logit_spread(logits)
    targets = lambda alpha: distancing_targets(strategy, logits, labels, scale=alpha, spread=spread, **distancing)
    targets(alphas[0])  # fails on a bad strategy before any training, not after the first support model
    if checkpoint_dir is not None:  # a run killed while saving left its temporary file behind
        remove_stale_temporaries(checkpoint_dir)
        remove_surplus_checkpoints(checkpoint_dir, len(alphas))
    batches = math.ceil(len(images) / batch_size)
    epochs = max(epochs, math.ceil(min_steps / batches))
    data_digest = _digest(start.state_dict(), images, labels)
    config = {"strategy": strategy, **_plain(distancing), "init": init}
    # the epochs actually trained: a min_steps that adds none leaves the fingerprint as it was
    config |= {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}
    training = {"loss": "mse", "epochs": epochs, "batch_size": batch_size, "lr": lr, "device": device}
    supports = SupportModels()
    for step, alpha in enumerate(tqdm(alphas, desc="support models", disable=not progress), start=1):
        alphas_behind = alphas[:step] if init == "chained" else (alpha,)
        fingerprint = _digest(data_digest, {**config, "alphas": list(alphas_behind)})
        model = copy.deepcopy(supports[-1] if init == "chained" and supports else start)
        path = None if checkpoint_dir is None else support_checkpoint_path(checkpoint_dir, step)
        state_dict, meta = load_checkpoint(path) if resume and path is not None and path.is_file() else ({}, {})
        if meta.get("fingerprint") == fingerprint:  # saved by a run that made it the same way
            model.load_state_dict(state_dict)
        else:
            history = train_model(model, images, targets(alpha), seed=seed + step, progress=progress, **training)
            if path is not None:
                losses = history.train_loss
                meta = {"step": step, "alpha": alpha, "fingerprint": fingerprint, "final_loss": losses[-1]}
                save_checkpoint(path, model, meta={**meta, "train_loss": losses, "spread": spread.tolist(), **config})
        supports.append(model.to(device).eval())
    supports.epochs, supports.steps = epochs, epochs * batches
    target_logits = [targets(alpha) for alpha in alphas]
    mean_margin = lambda values: float(distancing_margin(values, labels, strategy, **distancing).nanmean())
    supports.original_margin = original_margin = mean_margin(logits)
    supports.margins = [mean_margin(predict_logits(support, images)) for support in supports]
    supports.target_margins = [mean_margin(target) for target in target_logits]
    supports.margin_reached = [
        (margin - original_margin) / gain if (gain := target - original_margin) > 0 else math.nan
        for margin, target in zip(supports.margins, supports.target_margins, strict=True)
    ]
    reached = enumerate(supports.margin_reached, start=1)  # NaN (α = 0) is never short
    short = [] if min_margin_fraction is None else [(s, r) for s, r in reached if r < min_margin_fraction]
    if short:
        which = ", ".join(f"{s} (α = {alphas[s - 1]:g}): {share:.0%}" for s, share in short)
        warnings.warn(
            f"support models under-trained: {which} of the intended margin gain reached on the training images "
            f"(threshold min_margin_fraction = {min_margin_fraction:g}). Each trained {supports.steps} optimiser "
            f"steps ({supports.epochs} epochs of {len(images)} images at batch {batch_size}, lr {lr:g}, "
            f"min_steps {min_steps}). Train longer or faster: raise min_steps (more epochs on small data), "
            f"epochs or lr (e.g. lr=1e-3); support_fidelity shows the margins on held-out images.",
            RuntimeWarning,
            stacklevel=2,
        )
    return supports


def _in_model_dtype(images: torch.Tensor, model: nn.Module, name: str) -> torch.Tensor:
    """Images in the dtype of the model's parameters, with a note when they had another (e.g. float64)."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), images.dtype)
    if images.dtype != dtype:
        warnings.warn(f"{name} are {images.dtype}; converted to {dtype}, the model's dtype", UserWarning, stacklevel=3)
        images = images.to(dtype)
    return images


def _as_tensor(values: Any, name: str) -> torch.Tensor:
    """A numpy array as a tensor (sharing memory); a tensor as it is; anything else refused."""
    if isinstance(values, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(values))
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor or a numpy array; got {type(values).__name__}")
    return values


def load_support_models(
    checkpoint_dir: str | os.PathLike, original: nn.Module, alphas: Sequence[float]
) -> tuple[list[nn.Module], list[dict[str, Any]]]:
    """(models, metas): the K support models :func:`train_support_models` saved in ``checkpoint_dir``,
    in eval mode on the device of ``original`` (their architecture), and their checkpoint metadata;
    each file's alpha must match ``alphas``."""
    alphas = check_alpha_schedule(alphas)
    models, metas = [], []
    for step, alpha in enumerate(alphas, start=1):
        model = copy.deepcopy(original)
        path = support_checkpoint_path(checkpoint_dir, step)
        _, meta = load_checkpoint(path, model, created_by=_CREATED_BY)
        if not math.isclose(meta.get("alpha", math.nan), alpha):
            raise ValueError(
                f"{path} holds the support model for alpha {meta.get('alpha')}, but the "
                f"schedule says {alpha}; re-run the support-model stage"
            )
        models.append(model.eval())
        metas.append(meta)
    return models, metas


def support_fidelity(
    original: nn.Module,
    supports: Sequence[nn.Module],
    alphas: Sequence[float],
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    strategy: str = "pair",
    pair: Sequence[int] | None = (0, 1),
    cls: int | None = None,
    groups: tuple[Sequence[int], Sequence[int]] | None = None,
    spread: torch.Tensor | Sequence[float] | None = None,
    final_losses: Sequence[float] | None = None,
    batch_size: int = 256,
) -> list[dict[str, Any]]:
    """How each support model classifies, and how far it pushed the classes apart, on test images: K + 1
    dicts, the original (alpha 0) then supports 1..K, of alpha, accuracy, agreement (argmax equal to the
    original's), margin and target_margin (as :class:`SupportModels`, on the test images) and final_loss.

    ``original``, ``supports``, ``alphas``: the classifier, its K support models and their α schedule;
    ``test_images``, ``test_labels``: (N, C, H, W) pixel-space images in [0, 1] (tensor or array) and (N,)
    logit indices; ``strategy``, ``pair``, ``cls``, ``groups``: the supports' distancing; ``spread``: (C,)
    of their targets (checkpoint meta; default of the test logits); ``final_losses``: theirs, or None.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from gadlib import support_fidelity, train_support_models
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> labels = torch.arange(60) % 2
    >>> images = torch.rand(60, 1, 4, 4) * 0.5 + 0.5 * labels[:, None, None, None]
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    >>> supports = train_support_models(model, images[:40], labels[:40], alphas=[1.0, 2.0], pair=(0, 1),
    ...                                 lr=0.05, progress=False)
    >>> rows = support_fidelity(model, supports, [1.0, 2.0], images[40:], labels[40:], pair=(0, 1))
    >>> [row["alpha"] for row in rows]  # the original first, then each support model
    [0.0, 1.0, 2.0]
    >>> all(row["margin"] > rows[0]["margin"] for row in rows[1:])  # the supports push the classes apart
    True
    """
    alphas = check_alpha_schedule(alphas)
    supports = check_support_models(supports)
    test_images, test_labels = _as_tensor(test_images, "test_images"), _as_tensor(test_labels, "test_labels")
    test_images = _in_model_dtype(
        check_images(test_images, "test_images", require_tensor=True), original, "test_images"
    )
    if len(supports) != len(alphas):
        raise ValueError(f"{len(supports)} support models but {len(alphas)} alphas")
    if final_losses is not None and len(final_losses) != len(alphas):
        raise ValueError(f"{len(final_losses)} final losses but {len(alphas)} alphas")
    if len(test_images) != len(test_labels):
        raise ValueError(f"{len(test_images)} test images but {len(test_labels)} test labels")
    distancing = {"pair": pair, "cls": cls, "groups": groups}
    labels = test_labels.cpu()
    original_logits = predict_logits(original, test_images, batch_size=batch_size)
    spread = logit_spread(original_logits) if spread is None else spread
    mean_margin = lambda logits: float(distancing_margin(logits, labels, strategy, **distancing).nanmean())

    def row(alpha: float, logits: torch.Tensor, targets: torch.Tensor, final_loss: float) -> dict[str, Any]:
        prediction = logits.argmax(dim=1)
        return {
            "alpha": alpha,
            "accuracy": float((prediction == labels).float().mean()),
            "agreement": float((prediction == original_logits.argmax(dim=1)).float().mean()),
            "margin": mean_margin(logits),
            "target_margin": mean_margin(targets),
            "final_loss": final_loss,
        }

    losses = [math.nan] * len(alphas) if final_losses is None else [float(loss) for loss in final_losses]
    rows = [row(0.0, original_logits, original_logits, math.nan)]
    for support, alpha, loss in zip(supports, alphas, losses, strict=True):
        logits = predict_logits(support, test_images, batch_size=batch_size)
        targets = distancing_targets(
            strategy, original_logits, labels, scale=alpha, spread=spread, allow_other=True, **distancing
        )
        rows.append(row(alpha, logits, targets, loss))
    return rows


def _digest(*parts: Any) -> str:
    """SHA-256 over tensors (exact bytes), state dicts and JSON-able values."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            digest.update(str((part.dtype, tuple(part.shape))).encode())
            digest.update(part.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(part, dict) and all(isinstance(v, torch.Tensor) for v in part.values()):
            for name in sorted(part):
                digest.update(name.encode())
                digest.update(_digest(part[name]).encode())
        else:
            digest.update(json.dumps(_plain(part), sort_keys=True).encode())
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """Tuples to lists and numpy numbers to Python ones, so config values are JSON-friendly."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    return value
