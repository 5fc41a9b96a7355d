"""Algorithm 2, steps 2-5: from K + 1 attribution maps to the GAD map.

Per-pixel importance of every map, each map binarised by its own threshold, a consistency mask of
the pixels kept in every map (or in at least ``min_agreement`` of them), and the GAD map = the
original's attribution where the mask holds, zero elsewhere. The importance and binarisation are
shared with the hull evaluation (its step 1), so that both read a map the same way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from gadlib.choices import IMPORTANCE_MODES, THRESHOLD_MODES


def pixel_importance(attributions: torch.Tensor, mode: str = "abs") -> torch.Tensor:
    """Collapse channels into one importance value per pixel.

    Parameters
    ----------
    attributions : (..., C, H, W) tensor
        Raw attribution maps.
    mode : {"abs", "positive"}
        ``abs``: sum over channels of the absolute value; ``positive``: sum of the positive part.

    Returns
    -------
    (..., H, W) tensor, non-negative. NaN entries are replaced by 0 with a warning.
    """
    if mode not in IMPORTANCE_MODES:
        raise ValueError(f"unknown importance mode {mode!r}; use one of {IMPORTANCE_MODES}")
    if attributions.dim() < 3:
        raise ValueError(f"attributions must have shape (..., C, H, W); got {tuple(attributions.shape)}")
    values = attributions.abs() if mode == "abs" else attributions.clamp(min=0)
    importance = values.sum(dim=-3)
    bad = ~torch.isfinite(importance)
    if bad.any():
        warnings.warn(
            f"{int(bad.sum())} attribution values are NaN or infinite; they count as importance 0",
            RuntimeWarning,
            stacklevel=2,
        )
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
    """Keep the important pixels of each map, each map by its own threshold.

    Parameters
    ----------
    importance : (..., H, W) non-negative tensor
    mode : {"quantile", "fraction_of_max"}
        ``quantile``: keep pixels at or above the map's own q-quantile (q = 0.9 keeps the top 10%);
        ``fraction_of_max``: keep pixels at or above ``tau * max``.
    q : float in (0, 1)
    tau : float in (0, 1]

    Returns
    -------
    (..., H, W) bool tensor. Pixels of importance 0 are never kept, so a map that is all zeros keeps
    no pixel (warning), never every pixel.
    """
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
    """Everything the fusion of one batch of images produced.

    Attributes
    ----------
    gad : (N, C, H, W) the original's attribution A_0 where ``consistency`` holds, zero elsewhere.
    importance : (M, N, H, W) per-pixel importance of every map (model 0 is the original).
    masks : (M, N, H, W) bool, the pixels each map keeps.
    consistency : (N, H, W) bool, the pixels kept by enough maps.
    """

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
    """Algorithm 2, steps 2-5: keep the original's attribution where enough maps agree.

    Parameters
    ----------
    attributions : (M, N, C, H, W); map 0 is the original model's, maps 1..M-1 the support models'.
    importance : per-pixel importance, ``"abs"`` or ``"positive"`` (sum over channels).
    threshold_mode, q, tau : how each map is binarised (:func:`gadlib.method.fusion.binarize`).
    min_agreement : a pixel is consistent when at least this many of the M maps keep it;
        ``None`` = all M.

    Returns
    -------
    FusionResult. Degenerate input is defined, never a crash: an all-zero map keeps no pixel (so with
    ``min_agreement=None`` the GAD map of that image is all zero), and NaN or infinite attribution
    values count as importance 0 and are 0 in the GAD map; both cases warn.

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
