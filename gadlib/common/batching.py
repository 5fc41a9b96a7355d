"""Batched loops that survive running out of memory: every batched path of gadlib runs through
:func:`batch_results`, which retries a batch that does not fit with halved sizes instead of failing.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

Result = TypeVar("Result")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an out-of-memory error (CUDA's own type, or its message on any device)."""
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(err, oom_type):
        return True
    message = str(err).lower()
    return "out of memory" in message or "can't allocate memory" in message


def batch_results(
    compute: Callable[[int, dict[str, int | None]], tuple[int, Result]],
    n_items: int,
    sizes: dict[str, int | None],
    *,
    during: str,
    stacklevel: int = 1,
) -> Iterator[tuple[int, int, Result]]:
    """Yield ``(start, stop, result)`` for consecutive batches covering items ``0 .. n_items - 1``, where
    ``compute(start, sizes) -> (stop, result)`` does as many items as the batch ``sizes`` (name -> size or
    None) allow. On out-of-memory every size is halved in place (the caller keeps those that fit) and the
    batch retried, with a RuntimeWarning naming ``during`` (e.g. ``"prediction"``) and pointing
    ``stacklevel`` frames above the loop over this generator; once every size is 1 the error is raised."""
    start = 0
    while start < n_items:
        try:
            stop, result = compute(start, sizes)
        except RuntimeError as err:
            if not is_out_of_memory(err) or all(size in (None, 1) for size in sizes.values()):
                raise
            out_of_memory = True
        else:
            out_of_memory = False
        if out_of_memory:  # outside the except block: the traceback, and with it the batch, is freed
            before = _listed(sizes)
            sizes.update({name: max(1, size // 2) for name, size in sizes.items() if size is not None})
            message = f"out of memory during {during} with {before}; retrying with {_listed(sizes)}"
            warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)
            if torch.cuda.is_available():  # hand the cached blocks back to CUDA
                torch.cuda.empty_cache()
            continue
        yield start, stop, result
        start = stop


def _listed(sizes: dict[str, int | None]) -> str:
    return ", ".join(f"{name}={size}" for name, size in sizes.items() if size is not None)
