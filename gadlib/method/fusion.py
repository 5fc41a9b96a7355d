"""Algorithm 2, steps 2-5 (docs/method.md): from K + 1 attribution maps to the GAD map.

The hull evaluation reads maps with the same importance and binarisation, so both read a map alike.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from gadlib.choices import IMPORTANCE_MODES, THRESHOLD_MODES


def pixel_importance(attributions: torch.Tensor, mode: str = "abs") -> torch.Tensor:
    """(..., H, W) non-negative importance of (..., C, H, W) attribution maps: the sum over channels of
    |value| (``mode="abs"``) or of the positive part (``"positive"``); NaN or infinite ones count as 0 (warned)."""
    if mode not in IMPORTANCE_MODES:
        raise ValueError(f"unknown importance mode {mode!r}; use one of {IMPORTANCE_MODES}")
    if attributions.dim() < 3:
        raise ValueError(f"attributions must have shape (..., C, H, W); got {tuple(attributions.shape)}")
    values = attributions.abs() if mode == "abs" else attributions.clamp(min=0)
    importance = values.sum(dim=-3)
    bad = ~torch.isfinite(importance)
    if bad.any():
        message = f"{int(bad.sum())} attribution values are NaN or infinite; they count as importance 0"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        importance = torch.where(bad, torch.zeros_like(importance), importance)
    return importance


def check_threshold_options(mode: str, q: float, tau: float) -> None:
    """Raise ValueError naming the value if a binarisation option is out of range."""
    if mode not in THRESHOLD_MODES:
        raise ValueError(f"unknown threshold mode {mode!r}; use one of {THRESHOLD_MODES}")
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile q must lie strictly between 0 and 1; got {q}")
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must lie in (0, 1]; got {tau}")


def binarize(importance: torch.Tensor, mode: str = "quantile", q: float = 0.9, tau: float = 0.5) -> torch.Tensor:
    """(..., H, W) bool mask of the important pixels of each (..., H, W) non-negative map, by its own
    threshold: at or above its q-quantile (``mode="quantile"``, q in (0, 1): 0.9 keeps the top 10%) or
    ``tau * max`` (``"fraction_of_max"``, tau in (0, 1]). Importance 0 is never kept (an all-zero map: warned)."""
    check_threshold_options(mode, q, tau)
    if importance.dim() < 2:
        raise ValueError(f"importance must have shape (..., H, W); got {tuple(importance.shape)}")
    flat = importance.reshape(*importance.shape[:-2], -1).float()
    if mode == "quantile":
        cut = torch.quantile(flat, q, dim=-1, keepdim=True)
    else:
        cut = tau * flat.amax(dim=-1, keepdim=True)
    empty = flat.amax(dim=-1, keepdim=True) <= 0
    if empty.any():
        warnings.warn(f"{int(empty.sum())} maps are all zero; they keep no pixel", RuntimeWarning, stacklevel=2)
    # A pixel of importance 0 is never important: a sparse map (fewer than 1 - q non-zero pixels,
    # a GAD map or a ReLU-heavy GuidedBackprop map) has a q-quantile of 0 and would keep every pixel.
    keep = (flat >= cut) & (flat > 0)
    return keep.reshape(importance.shape)


@dataclass
class FusionResult:
    """The fusion of one batch: ``gad`` (N, C, H, W), the original's attribution A_0 where ``consistency``
    ((N, H, W) bool: kept by enough maps) holds, 0 elsewhere; every map's per-pixel ``importance``
    (M, N, H, W), model 0 the original; ``masks`` (M, N, H, W) bool, the pixels each map keeps."""

    gad: torch.Tensor
    importance: torch.Tensor
    masks: torch.Tensor
    consistency: torch.Tensor


def fuse_maps(
    attributions: torch.Tensor,
    *,
    importance: str = "abs",
    threshold_mode: str = "quantile",
    q: float = 0.9,
    tau: float = 0.5,
    min_agreement: int | None = None,
) -> FusionResult:
    """Algorithm 2, steps 2-5: the :class:`FusionResult` keeping the original's attribution where enough maps agree.

    ``attributions``: (M, N, C, H, W), map 0 the original model's, maps 1..M-1 the support models';
    ``importance``, ``threshold_mode``, ``q``, ``tau``: see :func:`pixel_importance` and :func:`binarize`;
    ``min_agreement``: how many of the M maps must keep a pixel (None: all).

    Examples
    --------
    >>> import torch
    >>> from gadlib import fuse_maps
    >>> original = torch.tensor([4.0, -3.0, 2.0, 1.0]).reshape(1, 1, 1, 1, 4)  # (M, N, C, H, W), 1 x 4 pixels
    >>> support = torch.tensor([1.0, 3.0, 2.0, 4.0]).reshape(1, 1, 1, 1, 4)
    >>> result = fuse_maps(torch.cat([original, support]), q=0.5)  # each map keeps its top half (by |A|)
    >>> result.masks[:, 0, 0].tolist()  # the original keeps pixels 0 and 1, the support 1 and 3
    [[True, True, False, False], [False, True, False, True]]
    >>> result.gad.flatten().tolist()  # the original's values where both agree, zero elsewhere
    [0.0, -3.0, 0.0, 0.0]
    """
    if attributions.dim() != 5 or len(attributions) == 0:
        raise ValueError(f"attributions must have shape (M, N, C, H, W) with M >= 1; got {tuple(attributions.shape)}")
    needed = check_fusion_options(importance, threshold_mode, q, tau, min_agreement, len(attributions))
    pixel_scores = pixel_importance(attributions, importance)
    masks = binarize(pixel_scores, threshold_mode, q, tau)
    consistency = masks.sum(dim=0) >= needed
    original = torch.nan_to_num(attributions[0], nan=0.0, posinf=0.0, neginf=0.0)
    gad = torch.where(consistency.unsqueeze(1), original, torch.zeros_like(original))
    return FusionResult(gad=gad, importance=pixel_scores, masks=masks, consistency=consistency)


def check_fusion_options(
    importance: str, threshold_mode: str, q: float, tau: float, min_agreement: int | None, n_maps: int
) -> int:
    """Validate the fusion options up front; return how many maps must keep a pixel."""
    if importance not in IMPORTANCE_MODES:
        raise ValueError(f"unknown importance mode {importance!r}; use one of {IMPORTANCE_MODES}")
    check_threshold_options(threshold_mode, q, tau)
    if min_agreement is None:
        return n_maps
    is_integer = isinstance(min_agreement, int) and not isinstance(min_agreement, bool)
    if not is_integer or not 1 <= min_agreement <= n_maps:
        raise ValueError(
            f"min_agreement must be an integer in [1, {n_maps}] (the number of maps, "
            f"original included) or None; got {min_agreement!r}"
        )
    return min_agreement
