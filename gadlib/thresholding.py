"""From attribution maps to per-pixel importance and binary masks of the important pixels.

Shared by the GAD fusion (Algorithm 2, steps 2-3) and by the hull evaluation (step 1), so that both
read a map the same way.
"""

from __future__ import annotations

import warnings

import torch

IMPORTANCE_MODES = ("abs", "positive")
THRESHOLD_MODES = ("quantile", "fraction_of_max")


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
        raise ValueError(
            f"attributions must have shape (..., C, H, W); got {tuple(attributions.shape)}"
        )
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


def binarize(
    importance: torch.Tensor, mode: str = "quantile", q: float = 0.9, tau: float = 0.5
) -> torch.Tensor:
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
        warnings.warn(
            f"{int(empty.sum())} maps are all zero; they keep no pixel",
            RuntimeWarning,
            stacklevel=2,
        )
    # A pixel of importance 0 is never important: a sparse map (fewer than 1 - q non-zero pixels,
    # a GAD map or a ReLU-heavy GuidedBackprop map) has a q-quantile of 0 and would keep every pixel.
    keep = (flat >= cut) & (flat > 0)
    return keep.reshape(importance.shape)
