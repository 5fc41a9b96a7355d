"""Checks of the arrays users pass in (image batches, binary masks, per-pixel importance), numpy or torch
alike, raising exceptions that name the argument, the bad value and the fix. Imports no torch.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

# Float round-off at the ends of [0, 1] is tolerated; normalised images are far outside it.
PIXEL_RANGE_TOLERANCE = 1e-6
# How many image indices an error names before "..." (the count is always given).
_SHOWN_INDICES = 10


class InputRangeWarning(UserWarning):
    """Images outside [0, 1] given where gadlib assumes pixel-space images (see :func:`pixel_range_note`)."""


def check_batch(values: Any, name: str = "inputs", *, require_tensor: bool = False) -> Any:
    """``values`` if it is a floating-point (N, ...) batch, N >= 1 (array or tensor; only a tensor with
    ``require_tensor``), else TypeError or ValueError naming the argument ``name``."""
    _check_floating(values, name, require_tensor)
    if values.ndim < 2 or values.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, ...) with N >= 1; got {tuple(values.shape)}")
    return values


def check_images(
    images: Any,
    name: str = "images",
    *,
    pixel_space: bool = False,
    channels: Sequence[int] | None = None,
    require_tensor: bool = False,
) -> Any:
    """``images`` if it is a floating-point (N, C, H, W) batch as :func:`check_batch`, with C in
    ``channels`` (None: any) and, with ``pixel_space``, finite values in [0, 1] (up to
    ``PIXEL_RANGE_TOLERANCE``)."""
    _check_floating(images, name, require_tensor)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, C, H, W) with N >= 1; got {tuple(images.shape)}")
    if channels is not None and images.shape[1] not in channels:
        raise ValueError(f"{name} must have C in {tuple(channels)} channels; got shape {tuple(images.shape)}")
    if pixel_space:
        lo, hi = pixel_range(images)
        if not (np.isfinite(lo) and np.isfinite(hi)) or outside_pixel_range(lo, hi):
            raise ValueError(
                f"{name} hold values in [{lo:.4g}, {hi:.4g}], outside [0, 1]. Models here expect "
                f"pixel-space input in [0, 1], i.e. un-normalised (each model normalises inside); pass "
                f"the images before normalisation."
            )
    return images


def pixel_range(images: Any) -> tuple[float, float]:
    """(min, max) of a batch of images (numpy array or torch tensor), as Python floats."""
    return float(images.min()), float(images.max())


def outside_pixel_range(low: float, high: float) -> bool:
    """Whether values from ``low`` to ``high`` leave [0, 1] by more than ``PIXEL_RANGE_TOLERANCE``."""
    return low < -PIXEL_RANGE_TOLERANCE or high > 1 + PIXEL_RANGE_TOLERANCE


def pixel_range_note(name: str, low: float, high: float) -> str:
    """The sentence gadlib says when images hold values in [low, high], outside [0, 1]."""
    return (
        f"{name} hold values in [{low:.4g}, {high:.4g}], outside [0, 1]. gadlib assumes pixel-space images in "
        f"[0, 1], with any normalisation inside the model, so that Integrated Gradients' default baseline "
        f"(zero) is a black image. For a model that takes standardised images, zero is the mean image: "
        f"pass the black image in the model's input space, baselines=(torch.zeros_like(images) - mean) / std, "
        f"or better move the normalisation into the model (then the support models must be trained from "
        f"that model, on images in [0, 1])."
    )


def non_finite_rows(values: Any) -> list[int]:
    """Indices of the rows (first axis) of an array or tensor holding a NaN or an infinite value."""
    if _is_tensor(values):
        torch = sys.modules["torch"]
        bad = ~torch.isfinite(values.detach()).reshape(len(values), -1).all(dim=1)
        return bad.nonzero().flatten().cpu().tolist()
    arr = np.asarray(values)
    return np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)).tolist()


def name_indices(indices: Sequence[int], total: int) -> str:
    """``[3, 7] (2 of 10)``: the first few of a list of indices, with the count."""
    shown = ", ".join(str(i) for i in indices[:_SHOWN_INDICES])
    more = ", ..." if len(indices) > _SHOWN_INDICES else ""
    return f"[{shown}{more}] ({len(indices)} of {total})"


def check_finite_images(images: Any, name: str = "inputs") -> Any:
    """``images`` if every value is finite, else ValueError naming the images that are not."""
    if bad := non_finite_rows(images):
        raise ValueError(
            f"{name} hold NaN or infinite values in images {name_indices(bad, len(images))}; neither an "
            f"attribution nor a training target of such an image means anything: remove or repair them first."
        )
    return images


def check_mask(
    mask: Any, name: str = "mask", *, shape: Sequence[int] | None = None, axes: str = "(N, H, W)"
) -> np.ndarray:
    """``mask`` (bool, or numbers all 0 or 1; numpy or torch) as a bool numpy array: one (H, W) mask or,
    with ``shape``, exactly that shape (``axes`` names its axes in errors)."""
    arr = as_numpy(mask)
    if shape is None and arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (H, W) array; got shape {arr.shape}. Pass one map at a time "
            f"(index a batch as {name}[i])."
        )
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {axes} = {tuple(shape)}; got {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} of shape {arr.shape} has dtype {arr.dtype}; expected bool (or 0/1 numbers).")
    if not (binary := np.isin(arr, (0, 1))).all():
        raise ValueError(
            f"{name} of shape {arr.shape} and dtype {arr.dtype} holds values other than 0 and 1 "
            f"(e.g. {np.unique(arr[~binary])[:3].tolist()}); binarise it first with "
            f"gadlib.method.fusion.binarize."
        )
    return arr.astype(bool)


def check_importance(importance: Any, name: str = "importance", *, shape: Sequence[int] | None = None) -> np.ndarray:
    """(N, H, W) non-negative per-pixel ``importance`` (array or tensor, channels collapsed; of ``shape``
    if given) as a float numpy array (float32 for integers); NaN and infinite values count as 0, with a
    RuntimeWarning pointing at the caller's caller."""
    arr = as_numpy(importance)
    if (shape is None and arr.ndim != 3) or (shape is not None and arr.shape != tuple(shape)):
        expected = "(N, H, W)" if shape is None else f"(N, H, W) = {tuple(shape)} to match the images"
        raise ValueError(
            f"{name} must have shape {expected}; got {arr.shape}. Collapse channels first with "
            f"gadlib.method.fusion.pixel_importance."
        )
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    if (bad := ~np.isfinite(arr)).any():
        message = f"{name}: {int(bad.sum())} values are NaN or infinite; they count as importance 0"
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        arr = np.where(bad, arr.dtype.type(0), arr)
    if (arr < 0).any():
        raise ValueError(f"{name} must be non-negative per-pixel importance; got minimum {float(arr.min()):.4g}")
    return arr


def as_numpy(values: Any) -> np.ndarray:
    """A numpy view of an array-like; a torch tensor is detached and copied to the CPU first."""
    if _is_tensor(values):
        values = values.detach().cpu()
        if str(values.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            values = values.float()
        values = values.numpy()
    return np.asarray(values)


def _check_floating(values: Any, name: str, require_tensor: bool) -> None:
    """Raise TypeError unless ``values`` is a floating-point tensor (or, if allowed, numpy array)."""
    if not (_is_tensor(values) or (isinstance(values, np.ndarray) and not require_tensor)):
        kinds = "one tensor (torch.Tensor)" if require_tensor else "one tensor or numpy array"
        raise TypeError(f"{name} must be {kinds} of shape (N, C, H, W); got {type(values).__name__}")
    if not (values.is_floating_point() if _is_tensor(values) else values.dtype.kind == "f"):
        raise TypeError(f"{name} must be a floating-point tensor or array; got dtype {values.dtype}")


def _is_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor (without importing torch: if it is not loaded, it is not one)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)
