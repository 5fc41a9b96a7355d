"""Batched loops that survive running out of memory.

Every batched path of gadlib (predictions, attributions, the exact path's forward/backward passes)
runs through :func:`batch_results`: a batch that does not fit is retried with halved sizes, with a
warning, instead of failing after minutes of work.
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
    """Results of ``compute`` over consecutive batches that cover items ``0 .. n_items - 1``.

    Parameters
    ----------
    compute : ``compute(start, sizes) -> (stop, result)`` works on items ``start .. stop - 1``, as many
        as the current ``sizes`` allow, and returns the index after the last one and its result.
    n_items : number of items to cover.
    sizes : the batch sizes ``compute`` reads, by name (e.g. ``{"batch_size": 64}``; None = not in
        use). When a batch runs out of memory, every size is halved (not below 1) in place, so the
        caller keeps the sizes that fit, and the batch is retried, with a RuntimeWarning naming
        ``during`` and the sizes. Once every size is 1 the error is raised; other errors are raised
        at once.
    during : what the loop does, for the warning (e.g. ``"prediction"``).
    stacklevel : the frame the warning points at: 1 = the function iterating over this generator,
        2 = its caller, and so on.

    Yields
    ------
    ``(start, stop, result)`` for each batch, in order.
    """
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
            before = dict(sizes)
            for name, size in sizes.items():
                if size is not None:
                    sizes[name] = max(1, size // 2)
            _warn_out_of_memory(during, before, sizes, stacklevel + 2)
            continue
        yield start, stop, result
        start = stop


def _warn_out_of_memory(
    during: str, before: dict[str, int | None], after: dict[str, int | None], stacklevel: int
) -> None:
    """Warn that ``during`` ran out of memory and is retried, and hand the cached blocks back to CUDA."""

    def listed(values: dict[str, int | None]) -> str:
        return ", ".join(f"{name}={value}" for name, value in values.items() if value is not None)

    warnings.warn(
        f"out of memory during {during} with {listed(before)}; retrying with {listed(after)}",
        RuntimeWarning,
        stacklevel=stacklevel,
    )
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
