"""Class indices to explain or score, one per image: the one normaliser every entry point uses."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def class_indices(
    target: int | Sequence[int] | torch.Tensor,
    n: int,
    *,
    num_classes: int | None = None,
    name: str = "target",
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``target`` (one integer class index, or ``n`` of them: sequence, array or (n,) tensor) as an (n,)
    int64 contiguous tensor on ``device`` (default ``target``'s); each index must lie in [0, ``num_classes``)
    (if None, >= 0). ``name`` names the argument in the ValueError or TypeError (None)."""
    if target is None:
        raise TypeError(f"{name} must be a class index or {n} of them; got None")
    values = torch.as_tensor(target)
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices; got dtype {values.dtype}")
    if values.dim() == 0:
        values = values.expand(n)
    if values.shape != (n,):
        raise ValueError(f"{name} must be one class index or one per image ({n}); got shape {tuple(values.shape)}")
    values = values.to(torch.int64)
    bad = values < 0 if num_classes is None else (values < 0) | (values >= num_classes)
    if bool(bad.any()):
        wrong = values[bad].unique().tolist()
        if num_classes is None:
            raise ValueError(f"{name} {wrong} is negative; class indices lie in [0, number of outputs)")
        raise ValueError(
            f"{name} {wrong} is out of range: the model has {num_classes} outputs, so class "
            f"indices lie in [0, {num_classes})"
        )
    return (values if device is None else values.to(device)).contiguous()
