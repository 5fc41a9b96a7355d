"""Support regression models: one per α step, trained to output the distanced logits.

The original logits Z = f(D) are computed once, before any support model exists. Support model s
has the original's architecture and regresses the step-s targets (:mod:`gadlib.method.distancing`) with
MSE, starting from support s−1 (``init="chained"``; s = 1 starts from the original) or from the
original (``init="original"``). The original model itself is never modified.

With a checkpoint folder every finished support model is saved as ``support_{s}.pt``, with a
fingerprint of everything that determines it (original weights, data, distancing and training
config); a re-run skips the models whose fingerprint matches, so an interrupted run resumes. A run
with a shorter schedule deletes the files of the steps it no longer has, so the folder always holds
exactly the K models of the last run (DVC keeps earlier versions in its cache).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import numbers
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gadlib.choices import INIT_MODES
from gadlib.common.atomic import remove_stale_temporaries
from gadlib.common.progress import tqdm
from gadlib.method.distancing import check_alpha_schedule, distancing_margin, distancing_targets, logit_spread
from gadlib.models.checkpoints import load_checkpoint, save_checkpoint
from gadlib.models.training import predict_logits, select_device, train_model

_CHECKPOINT_NAME = re.compile(r"support_(\d+)\.pt")


def support_checkpoint_path(checkpoint_dir: str | os.PathLike, step: int) -> Path:
    """File of support model ``step`` (1-based) inside ``checkpoint_dir``."""
    return Path(checkpoint_dir) / f"support_{step}.pt"


def remove_surplus_checkpoints(checkpoint_dir: str | os.PathLike, n_models: int) -> list[Path]:
    """Delete ``support_{s}.pt`` for every ``s > n_models`` in ``checkpoint_dir``; the removed paths.

    Left behind by an earlier run with a longer α schedule, they would make the folder depend on
    the run's history instead of its parameters. Other files are left alone.
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return []
    surplus = sorted(
        path
        for path in folder.iterdir()
        if (match := _CHECKPOINT_NAME.fullmatch(path.name)) and int(match.group(1)) > n_models
    )
    for path in surplus:
        path.unlink()
    return surplus


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
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
) -> list[nn.Module]:
    """Train one support model per α of the schedule.

    Parameters
    ----------
    original : the trained classifier f; (B, C, H, W) -> (B, K) logits. Left untouched.
    images : (N, C, H, W) training images D of the classes involved.
    labels : (N,) int64 class indices into the logit vector.
    alphas : the schedule a_1 < ... < a_K (α in units of each logit's spread).
    strategy, pair, cls, groups : the distancing strategy, see :func:`gadlib.method.distancing.lowering_mask`.
    init : ``"chained"`` (support s starts from support s−1) or ``"original"`` (every one from f).
    epochs, lr, batch_size : Adam regression with MSE; support s shuffles with seed ``seed + s``.
    device : where to train; ``None`` = :func:`gadlib.models.training.select_device`.
    checkpoint_dir : save ``support_{s}.pt`` there (meta: step, alpha, fingerprint, final_loss,
        train_loss, spread); ``None`` keeps nothing on disk.
    resume : reuse a saved support model whose fingerprint matches instead of training it again.
    progress : progress bars.

    Returns
    -------
    list of K support models, in eval mode, on ``device``.
    """
    alphas = check_alpha_schedule(alphas)
    if init not in INIT_MODES:
        raise ValueError(f"unknown init {init!r}; use one of {INIT_MODES}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    device = select_device() if device is None else torch.device(device)
    distancing = {"strategy": strategy, "pair": pair, "cls": cls, "groups": groups}

    start = copy.deepcopy(original).to(device)
    logits = predict_logits(start, images, batch_size=batch_size)
    spread = logit_spread(logits)
    # Fail on a bad strategy before any training, not after the first support model.
    distancing_targets(strategy, logits, labels, scale=alphas[0], spread=spread, pair=pair, cls=cls, groups=groups)
    if checkpoint_dir is not None:  # a run killed while saving left its temporary file behind
        remove_stale_temporaries(checkpoint_dir)
        remove_surplus_checkpoints(checkpoint_dir, len(alphas))
    data_digest = _digest(start.state_dict(), images, labels)
    config = {**_plain(distancing), "init": init, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}

    supports: list[nn.Module] = []
    for step, alpha in enumerate(tqdm(alphas, desc="support models", disable=not progress), start=1):
        alphas_behind = alphas[:step] if init == "chained" else (alpha,)
        fingerprint = _digest(data_digest, {**config, "alphas": list(alphas_behind)})
        model = copy.deepcopy(supports[-1] if init == "chained" and supports else start)
        path = None if checkpoint_dir is None else support_checkpoint_path(checkpoint_dir, step)
        if not (resume and path is not None and _load_if_fingerprint_matches(path, model, fingerprint)):
            targets = distancing_targets(
                strategy, logits, labels, scale=alpha, spread=spread, pair=pair, cls=cls, groups=groups
            )
            history = train_model(
                model,
                images,
                targets,
                loss="mse",
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                seed=seed + step,
                device=device,
                progress=progress,
            )
            if path is not None:
                save_checkpoint(
                    path,
                    model,
                    meta={
                        "step": step,
                        "alpha": alpha,
                        "fingerprint": fingerprint,
                        "final_loss": history.train_loss[-1],
                        "train_loss": history.train_loss,
                        "spread": spread.tolist(),
                        **config,
                    },
                )
        supports.append(model.to(device).eval())
    return supports


def load_support_models(
    checkpoint_dir: str | os.PathLike, original: nn.Module, alphas: Sequence[float]
) -> tuple[list[nn.Module], list[dict[str, Any]]]:
    """Load the support models saved by :func:`train_support_models`, one per α.

    Parameters
    ----------
    checkpoint_dir : folder holding ``support_1.pt`` ... ``support_K.pt``.
    original : the classifier they were trained from (gives the architecture; left untouched).
    alphas : the schedule they were trained with; each file's alpha must match.

    Returns
    -------
    (models, metas): K models in eval mode on the original's device, and their checkpoint metadata.
    """
    alphas = check_alpha_schedule(alphas)
    models, metas = [], []
    for step, alpha in enumerate(alphas, start=1):
        model = copy.deepcopy(original)
        path = support_checkpoint_path(checkpoint_dir, step)
        _, meta = load_checkpoint(
            path, model, created_by="gadlib.method.support.train_support_models (the support-model stage)"
        )
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
    """How each support model classifies, and how far it pushed the classes apart, on test images.

    Parameters
    ----------
    original, supports, alphas : the classifier, its K support models and their α schedule.
    test_images : (N, C, H, W); test_labels : (N,) class indices into the logit vector.
    strategy, pair, cls, groups : the distancing the supports were trained with.
    spread : (C,) per-logit spread used for the training targets (the ``spread`` in the support
        checkpoints' meta); ``None`` = the spread of the original's logits on the test images.
    final_losses : the supports' final training losses (``final_loss`` in their meta), or ``None``.
    batch_size : images per forward pass.

    Returns
    -------
    K + 1 dicts, the original first (alpha 0), then supports 1..K, with keys
    alpha; accuracy (argmax against the labels); agreement (argmax equal to the original's);
    margin (mean of :func:`gadlib.method.distancing.distancing_margin`, for a pair z_true − z_other);
    target_margin (the same mean for the step's targets, built from the original's test logits);
    final_loss (NaN when unknown).
    """
    alphas = check_alpha_schedule(alphas)
    if len(supports) != len(alphas):
        raise ValueError(f"{len(supports)} support models but {len(alphas)} alphas")
    if final_losses is not None and len(final_losses) != len(alphas):
        raise ValueError(f"{len(final_losses)} final losses but {len(alphas)} alphas")
    if len(test_images) != len(test_labels):
        raise ValueError(f"{len(test_images)} test images but {len(test_labels)} test labels")
    distancing = {"pair": pair, "cls": cls, "groups": groups}
    labels = test_labels.cpu()
    original_logits = predict_logits(original, test_images, batch_size=batch_size)
    original_prediction = original_logits.argmax(dim=1)
    spread = logit_spread(original_logits) if spread is None else spread

    def mean_margin(logits: torch.Tensor) -> float:
        return float(distancing_margin(logits, labels, strategy, **distancing).nanmean())

    original_margin = mean_margin(original_logits)
    rows = [
        {
            "alpha": 0.0,
            "accuracy": float((original_prediction == labels).float().mean()),
            "agreement": 1.0,
            "margin": original_margin,
            "target_margin": original_margin,
            "final_loss": math.nan,
        }
    ]
    for step, (support, alpha) in enumerate(zip(supports, alphas, strict=True), start=1):
        prediction_logits = predict_logits(support, test_images, batch_size=batch_size)
        prediction = prediction_logits.argmax(dim=1)
        targets = distancing_targets(
            strategy, original_logits, labels, scale=alpha, spread=spread, allow_other=True, **distancing
        )
        rows.append(
            {
                "alpha": alpha,
                "accuracy": float((prediction == labels).float().mean()),
                "agreement": float((prediction == original_prediction).float().mean()),
                "margin": mean_margin(prediction_logits),
                "target_margin": mean_margin(targets),
                "final_loss": math.nan if final_losses is None else float(final_losses[step - 1]),
            }
        )
    return rows


def _load_if_fingerprint_matches(path: Path, model: nn.Module, fingerprint: str) -> bool:
    """Load the saved support model into ``model`` if ``path`` exists and was made the same way."""
    if not path.is_file():
        return False
    state_dict, meta = load_checkpoint(path)
    if meta.get("fingerprint") != fingerprint:
        return False
    model.load_state_dict(state_dict)
    return True


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
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value
