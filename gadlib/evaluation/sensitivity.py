"""Occlusion of region sets and region sensitivity ``RS(I, M, a) = (s(I) - s(I with M occluded)) / a``,
the score drop per occluded pixel of region set M (docs/method.md). Occlusion is in pixel space, before
the model's normalisation: black is the pixel value 0.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from gadlib.choices import FILLS, SCORE_MODES
from gadlib.common.checks import as_numpy, check_images, check_mask
from gadlib.common.modes import evaluation_mode
from gadlib.common.progress import tqdm
from gadlib.common.targets import class_indices


@dataclass(frozen=True)
class OcclusionResult:
    """Sensitivity of one region set M, per image, (N,) float64 arrays: ``score`` s(I), ``occluded_score``
    s(I with M occluded), ``score_drop`` their difference, ``area`` a (occluded pixels) and ``rs`` =
    drop / area (higher = more sensitive; NaN where a = 0)."""

    score: np.ndarray
    occluded_score: np.ndarray
    score_drop: np.ndarray
    area: np.ndarray
    rs: np.ndarray


def _as_masks(masks, images: torch.Tensor, name: str = "masks") -> torch.Tensor:
    n, _, h, w = images.shape
    return torch.from_numpy(check_mask(masks, name, shape=(n, h, w))).to(images.device)


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur per channel; kernel radius ceil(3 sigma), border pixels replicated."""
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(x**2) / (2.0 * sigma**2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    # Replicate padding works for any image size (reflect needs the image wider than the kernel).
    padded = torch.nn.functional.pad(images, (radius, radius, radius, radius), mode="replicate")
    out = torch.nn.functional.conv2d(padded, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return torch.nn.functional.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _fill_values(images: torch.Tensor, fill: str, mean, blur_sigma: float) -> torch.Tensor:
    if fill == "black":
        return torch.zeros((), dtype=images.dtype, device=images.device)
    if fill == "mean":
        c = images.shape[1]
        values = torch.as_tensor(mean, dtype=images.dtype, device=images.device).reshape(-1)
        if values.numel() == 1:
            values = values.expand(c)
        if values.numel() != c or values.min() < 0 or values.max() > 1:
            raise ValueError(f"mean must hold {c} per-channel pixel-space values in [0, 1]; got {mean!r}")
        return values.view(1, c, 1, 1)
    return _gaussian_blur(images, blur_sigma)


def _check_fill(fill: str, mean, blur_sigma: float) -> None:
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; use one of {FILLS}")
    if fill == "mean" and mean is None:
        raise ValueError(
            'fill="mean" needs mean=, the per-channel dataset mean in pixel space (e.g. (0.286,) for Fashion-MNIST)'
        )
    if fill == "blur" and not (isinstance(blur_sigma, (int, float)) and blur_sigma > 0):
        raise ValueError(f"blur_sigma must be a positive number of pixels; got {blur_sigma!r}")


def occlude(images: torch.Tensor, masks, fill: str = "black", mean=None, blur_sigma: float = 2.0) -> torch.Tensor:
    """A new (N, C, H, W) tensor: the (N, C, H, W) pixel-space images in [0, 1] with the pixels where the
    (N, H, W) bool ``masks`` hold replaced, in every channel, by ``fill``: ``"black"`` (0), ``"mean"``
    (``mean``, C per-channel values in [0, 1]) or ``"blur"`` (a Gaussian blur of ``blur_sigma`` > 0
    pixels: the local colour without detail)."""
    check_images(images, pixel_space=True, require_tensor=True)
    _check_fill(fill, mean, blur_sigma)
    masks = _as_masks(masks, images)
    return torch.where(masks[:, None], _fill_values(images, fill, mean, blur_sigma), images)


def score(
    model: torch.nn.Module, images: torch.Tensor, target, other=None, mode: str = "logit", batch_size: int = 256
) -> np.ndarray:
    """(N,) float64 score of each image: the ``target`` logit (``mode="logit"``), or its margin over
    ``other`` (``"margin"``; default for a 2-output model: the other output), computed by ``model`` in
    eval mode, ``batch_size`` images at a time. ``images``: (N, C, H, W) pixel space, on the model's device;
    ``target``, ``other``: an int or (N,) ints."""
    check_images(images, pixel_space=True, require_tensor=True)
    _check_score_args(mode, other)
    nothing_occluded = torch.zeros((1,) + tuple(images[:, 0].shape), dtype=torch.bool, device=images.device)
    return _occluded_scores(
        model, images, nothing_occluded, target, other, mode, "black", None, 2.0, batch_size, progress=False
    )[0]


def occlusion_sensitivity(
    model: torch.nn.Module,
    images: torch.Tensor,
    masks_by_set,
    target,
    *,
    fill: str = "black",
    score_mode: str = "logit",
    other=None,
    mean=None,
    blur_sigma: float = 2.0,
    batch_size: int = 256,
    progress: bool = True,
) -> dict:
    """Region sensitivity of several region sets on the same images, in batched forward passes: name (or
    0..S-1) -> :class:`OcclusionResult`; RS of an empty set is NaN, with one RuntimeWarning per call.

    ``model`` takes pixel-space images on the device of ``images`` ((N, C, H, W) floats in [0, 1]);
    ``masks_by_set``: the region sets, name -> (N, H, W) bool or an (S, N, H, W) bool array; ``target``:
    an int or (N,) ints; ``fill``, ``mean``, ``blur_sigma``: see :func:`occlude`; ``score_mode``, ``other``:
    :func:`score`'s; ``batch_size``: inputs per pass of the stream of clean and occluded images.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from gadlib import occlusion_sensitivity
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2, bias=False))
    >>> with torch.no_grad():  # logit 0 is the sum of the left half of the image
    ...     _ = model[1].weight.copy_(torch.stack([torch.tensor([1.0, 1, 0, 0] * 4), torch.zeros(16)]))
    >>> images = torch.ones(1, 1, 4, 4)  # pixel space, in [0, 1]
    >>> left = torch.zeros(1, 4, 4, dtype=torch.bool)
    >>> left[:, :, :2] = True
    >>> result = occlusion_sensitivity(model, images, {"left": left, "right": ~left}, target=0, progress=False)
    >>> result["left"].score_drop, result["left"].rs  # 8 black pixels, each lowered the logit by 1
    (array([8.]), array([1.]))
    >>> result["right"].rs  # occluding what the logit ignores changes nothing
    array([0.])
    """
    check_images(images, pixel_space=True, require_tensor=True)
    _check_fill(fill, mean, blur_sigma)
    _check_score_args(score_mode, other)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if isinstance(masks_by_set, Mapping):
        names = list(masks_by_set)
        sets = [_as_masks(masks_by_set[k], images, f"masks_by_set[{k!r}]") for k in names]
    else:
        stacked = as_numpy(masks_by_set)
        if stacked.ndim != 4:
            raise ValueError(
                f"masks_by_set must be a dict of (N, H, W) masks or an (S, N, H, W) array; got shape {stacked.shape}"
            )
        names = list(range(stacked.shape[0]))
        sets = [_as_masks(stacked[i], images, f"masks_by_set[{i}]") for i in names]
    n = images.shape[0]
    # Set 0 of the stream is the clean image (nothing occluded).
    all_masks = torch.stack([torch.zeros_like(images[:, 0], dtype=torch.bool)] + sets)
    scores = _occluded_scores(
        model, images, all_masks, target, other, score_mode, fill, mean, blur_sigma, batch_size, progress
    )
    clean = scores[0]
    results, empty_counts = {}, {}
    for i, name in enumerate(names):
        area = sets[i].sum(dim=(1, 2)).double().cpu().numpy()
        drop = clean - scores[i + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            rs = np.where(area > 0, drop / np.where(area > 0, area, 1.0), np.nan)
        if (area == 0).any():
            empty_counts[name] = int((area == 0).sum())
        results[name] = OcclusionResult(clean.copy(), scores[i + 1].copy(), drop, area, rs)
    if empty_counts:
        message = f"RS undefined (empty region set, area 0) for images per set {empty_counts} of {n}; RS is NaN there"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return results


def _occluded_scores(
    model, images, all_masks, target, other, mode, fill, mean, blur_sigma, batch_size, progress
) -> np.ndarray:
    """(S, N) float64 scores of the N images with each of the (S, N, H, W) masks occluded, in a set-major
    stream of ``batch_size`` inputs per forward pass."""
    n = images.shape[0]
    target_t = class_indices(target, n, device=images.device)
    other_t = None if other is None else class_indices(other, n, name="other", device=images.device)
    total = all_masks.shape[0] * n
    scores = torch.empty(total, dtype=torch.float64)
    with evaluation_mode(model, no_grad=True):
        for start in tqdm(range(0, total, batch_size), desc="occlusion", disable=not progress):
            idx = torch.arange(start, min(start + batch_size, total), device=images.device)
            set_idx, img_idx = idx // n, idx % n
            batch = images[img_idx]
            fill_values = _fill_values(batch, fill, mean, blur_sigma)
            batch = torch.where(all_masks[set_idx, img_idx][:, None], fill_values, batch)
            logits = model(batch)
            if start == 0:  # the model's number of outputs is known now
                _check_score_args(mode, other, logits.shape[1])
                class_indices(target_t, n, num_classes=logits.shape[1])
                if mode == "margin" and other_t is not None:
                    class_indices(other_t, n, num_classes=logits.shape[1], name="other")
            s = logits.gather(1, target_t[img_idx][:, None])[:, 0]
            if mode == "margin":  # for a pair classifier the implied other class is the other output
                others = 1 - target_t[img_idx] if other_t is None else other_t[img_idx]
                s = s - logits.gather(1, others[:, None])[:, 0]
            scores[start : start + len(idx)] = s.double().cpu()
    return scores.numpy().reshape(all_masks.shape[0], n)


def _check_score_args(mode: str, other, n_outputs: int | None = None) -> None:
    if mode not in SCORE_MODES:
        raise ValueError(f"unknown score mode {mode!r}; use one of {SCORE_MODES}")
    if mode == "margin" and other is None and n_outputs is not None and n_outputs != 2:
        raise ValueError(
            f'score mode "margin" with a {n_outputs}-output model needs other=, the class whose '
            f"logit is subtracted (only a 2-output model has an implied other class)"
        )
