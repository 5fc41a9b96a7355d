"""Out-of-memory errors: recognising them, and announcing a retry with smaller batches.

Every batched loop in gadlib (predictions, attributions, the fast path's passes) halves its batch
when a pass runs out of memory, instead of failing after minutes of work; these are the pieces
they share.
"""

from __future__ import annotations

import warnings

import torch


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an out-of-memory error (CUDA's own type, or its message on any device)."""
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(err, oom_type):
        return True
    message = str(err).lower()
    return "out of memory" in message or "can't allocate memory" in message


def warn_out_of_memory(during: str, before: dict[str, int | None], after: dict[str, int | None],
                       stacklevel: int = 3) -> None:
    """Warn that ``during`` ran out of memory with the sizes ``before`` and is retried with ``after``,
    and hand the failed pass's cached blocks back to CUDA."""
    def sizes(values: dict[str, int | None]) -> str:
        return ", ".join(f"{name}={value}" for name, value in values.items() if value is not None)

    warnings.warn(f"out of memory during {during} with {sizes(before)}; retrying with {sizes(after)}",
                  RuntimeWarning, stacklevel=stacklevel)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
