"""Model checkpoints ``{"state_dict": ..., "meta": plain values describing how the weights were made}``,
saved atomically and loaded with ``weights_only=True`` (a file crafted to run code is refused).
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gadlib.common.atomic import write_bytes

DEFAULT_CREATOR = "the pipeline stage that trains this model (run `dvc repro`)"


def save_torch_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write a dict of tensors and plain values to ``path`` atomically with ``torch.save``."""
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict; got {type(state).__name__}")
    # Serialised in memory first: saved to a file, torch names the archive's folder after the file,
    # here the random temporary name, and the same weights would give other bytes (and DVC hashes).
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, buffer.getbuffer())


def load_torch_state(path: str | os.PathLike, created_by: str = DEFAULT_CREATOR) -> dict[str, Any]:
    """Read a dict written by :func:`save_torch_state` (tensors on the CPU), refusing anything but tensors
    and plain values; ``created_by`` names what writes the file, in the error when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; it is created by {created_by}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refused to load {path}: it holds objects other than tensors and plain values "
            f"(unpickling them could run code) or is not a checkpoint at all. Re-create it with "
            f"gadlib.models.checkpoints. ({err})"
        ) from err
    except (RuntimeError, EOFError, KeyError, ValueError) as err:
        raise ValueError(
            f"{path} is not a readable torch checkpoint (truncated or another format); "
            f"delete it and re-run {created_by}. ({err})"
        ) from err
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a checkpoint dict")
    return state


def save_checkpoint(
    path: str | os.PathLike,
    model_or_state_dict: nn.Module | dict[str, torch.Tensor],
    meta: dict[str, Any] | None = None,
) -> None:
    """Save a module's (or a state dict's) weights, on the CPU, and a dict of plain ``meta`` values to
    ``path`` atomically."""
    state_dict = model_or_state_dict
    if isinstance(state_dict, nn.Module):
        state_dict = state_dict.state_dict()
    elif not isinstance(state_dict, dict):
        raise TypeError(f"expected an nn.Module or a state dict; got {type(state_dict).__name__}")
    cpu_state = {name: value.detach().cpu() for name, value in state_dict.items()}
    save_torch_state(path, {"state_dict": cpu_state, "meta": dict(meta or {})})


def load_checkpoint(
    path: str | os.PathLike, model: nn.Module | None = None, created_by: str = DEFAULT_CREATOR
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict of CPU tensors, meta dict) of a :func:`save_checkpoint` file, also loaded strictly into
    ``model`` if given; ``created_by`` as in :func:`load_torch_state`."""
    state = load_torch_state(path, created_by)
    if set(state) != {"state_dict", "meta"}:
        raise ValueError(
            f"{path} is not a model checkpoint written by save_checkpoint "
            f"(keys {sorted(state)}, expected ['meta', 'state_dict'])"
        )
    state_dict, meta = state["state_dict"], state["meta"]
    if model is not None:
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as err:
            raise ValueError(
                f"the weights in {path} do not fit the given model (different architecture, "
                f"number of classes or input channels?): {err}"
            ) from err
    return state_dict, meta
