"""A stand-in for a GPU that runs out of memory: the retry paths are tested on the CPU."""

from __future__ import annotations

import torch
from torch import nn

OUT_OF_MEMORY = getattr(torch.cuda, "OutOfMemoryError", RuntimeError)


class RaisesOutOfMemory(nn.Module):
    """Wraps a model; a forward pass on more than ``limit`` rows raises as CUDA does when it runs out.

    ``error`` is the exception type (CUDA's own by default; plain RuntimeError is older torch's);
    ``rows`` records the size of every pass tried.
    """

    def __init__(self, model: nn.Module, limit: int, error: type[Exception] = OUT_OF_MEMORY) -> None:
        super().__init__()
        self.model, self.limit, self.error = model, limit, error
        self.rows: list[int] = []

    def forward(self, x):
        self.rows.append(len(x))
        if len(x) > self.limit:
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return self.model(x)
