"""Running out of memory during attribution retries with smaller batches; a full disk while writing
an output leaves the previous output as it was, with no temporary file behind and the file named.
"""

from __future__ import annotations

import errno
import json
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from gadlib import plots as plotting
from gadlib.common import atomic
from gadlib.data.prepared import load_prepared, save_prepared
from gadlib.method.gad import BATCHED_METHODS, GAD, METHODS
from gadlib.models import checkpoints
from gadlib.models.architectures import build_model
from tests.fixtures import tiny_prepared_data
from tests.out_of_memory import OUT_OF_MEMORY, RaisesOutOfMemory

SIZE = 8


def models(seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [build_model("small_cnn", 2, 1, SIZE, [0.5], [0.25]).eval() for _ in range(3)]


def images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def method_kwargs(method: str) -> dict:
    # SmoothGrad without noise: a retried batch draws its noise in another order; the batching is tested
    kwargs = {"IntegratedGradients": {"n_steps": 3}, "SmoothGrad": {"nt_samples": 5, "stdevs": 0.0}}
    return kwargs.get(method, {})


def gad_maps(method, nets, fast, target, batch_size=4):
    torch.manual_seed(0)  # SmoothGrad's noise
    gad = GAD(method, nets[0], nets[1:], fast=fast, batch_size=batch_size, internal_batch_size=64)
    return gad.attribute_detailed(images(), target=target, **method_kwargs(method))


@pytest.mark.parametrize(
    ("method", "fast", "target", "error"),
    [(m, True, None, OUT_OF_MEMORY) for m in BATCHED_METHODS]
    + [(m, False, None, OUT_OF_MEMORY) for m in METHODS]
    + [("Saliency", True, 1, RuntimeError), ("GuidedBackprop", False, 1, RuntimeError)],
)
def test_out_of_memory_retries_with_smaller_batches(method, fast, target, error):
    """target None: the prediction of the targets is retried too; RuntimeError: CUDA's older error type."""
    plain = models()
    expected = gad_maps(method, plain, fast, target)
    # SmoothGrad feeds 5 noisy copies per image: 2 images fit, 4 do not. Others: 2 rows fit.
    limit = 10 if method == "SmoothGrad" else 2
    wrapped = [RaisesOutOfMemory(m, limit, error) for m in plain]
    with pytest.warns(RuntimeWarning, match="out of memory"):
        result = gad_maps(method, wrapped, fast, target)
    assert max(wrapped[0].rows) > limit, "the simulated out-of-memory error never happened"
    torch.testing.assert_close(result.importance, expected.importance, rtol=1e-5, atol=1e-6)
    assert torch.equal(result.consistency, expected.consistency)


@pytest.mark.parametrize(("method", "fast"), [("Saliency", True), ("Saliency", False), ("GuidedBackprop", False)])
def test_out_of_memory_at_one_image_is_raised(method, fast):
    wrapped = [RaisesOutOfMemory(m, 0) for m in models()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(RuntimeError, match="CUDA out of memory"):
            GAD(method, wrapped[0], wrapped[1:], fast=fast, batch_size=4).attribute(images(), target=0)


def test_other_runtime_errors_are_not_retried():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(1))

        def forward(self, x):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "out of memory ... retrying" warning
        with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
            GAD("GuidedBackprop", Broken(), [Broken()]).attribute(images(), target=0)


# ------------------------------------------------------------------ full disk
def _fail_after_a_few_bytes(destination) -> None:
    """Write the start of a file, then fail as a full disk does."""
    if hasattr(destination, "write"):
        destination.write(b"PK\x03\x04 the first bytes")
    else:
        with open(destination, "wb") as fh:
            fh.write(b"the first bytes")
    raise OSError(errno.ENOSPC, "No space left on device")


def _figure(value: float) -> Figure:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, value])
    return fig


# writer -> (file name, write(path, version), (owner, attribute, index of the destination argument) of
#            the call that fills the temporary file, read(path): the old file still parses)
WRITERS = {
    "write_json": (
        "metrics.json",
        lambda path, v: atomic.write_json(path, {"accuracy": v}),
        (Path, "write_text", 0),
        lambda path: json.loads(path.read_text()),
    ),
    "write_text": (
        "report.md",
        lambda path, v: atomic.write_text(path, f"# Report {v}\n"),
        (Path, "write_text", 0),
        lambda path: path.read_text(),
    ),
    "save_arrays": (
        "attributions.npz",
        lambda path, v: atomic.save_arrays(path, gad=np.full(4, v)),
        (np, "savez", 0),
        atomic.load_arrays,
    ),
    "save_prepared": (
        "prepared.npz",
        lambda path, v: save_prepared(path, tiny_prepared_data(int(v) + 2)),
        (np, "savez", 0),
        load_prepared,
    ),
    "save_checkpoint": (
        "classifier.pt",
        lambda path, v: checkpoints.save_checkpoint(path, {"weight": torch.full((2,), v)}, {"version": v}),
        (Path, "write_bytes", 0),
        checkpoints.load_checkpoint,
    ),
    "save_figure": (
        "figure.png",
        lambda path, v: plotting.save_figure(_figure(v), path),
        (Figure, "savefig", 1),
        lambda path: path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n",
    ),
}


@pytest.mark.parametrize("writer", WRITERS)
def test_full_disk_leaves_the_previous_output_intact(writer, tmp_path, monkeypatch):
    name, write, (owner, attribute, destination), read = WRITERS[writer]
    path = tmp_path / "out" / name
    write(path, 1.0)
    before = path.read_bytes()

    monkeypatch.setattr(owner, attribute, lambda *args, **kwargs: _fail_after_a_few_bytes(args[destination]))
    with pytest.raises(OSError, match=rf"No space left on device; {path} was not written") as raised:
        write(path, 2.0)
    monkeypatch.undo()

    assert raised.value.errno == errno.ENOSPC
    assert path.read_bytes() == before, "the previous output changed"
    assert read(path), "the previous output no longer parses"
    assert [p.name for p in path.parent.iterdir()] == [name], "a temporary file was left behind"


def test_full_disk_without_a_previous_output_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "out" / "summary.json"
    monkeypatch.setattr(Path, "write_text", lambda self, *args, **kwargs: _fail_after_a_few_bytes(self))
    with pytest.raises(OSError, match="No space left on device"):
        atomic.write_json(path, {"rc_median": 0.5})
    monkeypatch.undo()
    assert list(path.parent.iterdir()) == []
