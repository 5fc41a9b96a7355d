"""A killed run resumes from its last finished support model, and no write, killed half-way, leaves a
file that looks finished.

Real subprocesses, killed with SIGKILL (nothing can be cleaned up on the way out): one trains support
models with a tiny CNN through gadlib.method.support.train_support_models with a checkpoint folder (what
notebooks/03_train_support.ipynb calls) and is killed while the second model trains, then the training
is run again; others are killed in the middle of writing an output through gadlib.common.atomic.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
import torch
import yaml

from gadlib.common.atomic import load_arrays, remove_stale_temporaries, save_arrays, write_json
from gadlib.method import support
from gadlib.models.architectures import build_model
from gadlib.models.checkpoints import load_checkpoint, save_checkpoint
from gadlib.project.paths import ExperimentPaths
from tests.fixtures import ROOT
from tests.notebooks import notebook_source

ALPHAS = [0.5, 1.0]
TIMEOUT = 120


def python(code: str, *args: str) -> subprocess.Popen:
    """Start ``python -c code args`` with this checkout's gadlib, one torch thread, output piped."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process ended before {what}:\n{process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(TIMEOUT)
    assert process.returncode == -signal.SIGKILL


# ------------------------------------------------------------------ support-model training
def train_supports(work: Path, checkpoint_dir: Path, epochs: int, log=print) -> None:
    """Train the support models of the saved original on the saved data, logging each one trained."""
    data = load_arrays(Path(work) / "data.npz")
    original = build_model("small_cnn", 2, 1, 16, [0.5], [0.25])
    load_checkpoint(Path(work) / "original.pt", original)
    train_model = support.train_model

    def logged(model, *args, **kwargs):  # support model s trains with seed 0 + s
        log(f"training support model {kwargs['seed']}")
        return train_model(model, *args, **kwargs)

    support.train_model = logged
    try:
        support.train_support_models(
            original,
            torch.from_numpy(data["images"]),
            torch.from_numpy(data["labels"]),
            alphas=ALPHAS,
            epochs=int(epochs),
            lr=1e-3,
            batch_size=32,
            seed=0,
            device="cpu",
            checkpoint_dir=checkpoint_dir,
            progress=False,
        )
    finally:
        support.train_model = train_model


TRAIN_SUPPORTS = """
    import functools, sys
    import torch
    torch.set_num_threads(1)
    from tests.reliability.test_interruption import train_supports
    train_supports(*sys.argv[1:], log=functools.partial(print, flush=True))
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The original model and its training data, saved for the subprocesses to load."""
    work = tmp_path_factory.mktemp("supports")
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(256) % 2
    images = torch.rand(256, 1, 16, 16, generator=generator) * 0.5 + 0.5 * labels[:, None, None, None]
    save_arrays(work / "data.npz", images=images.numpy(), labels=labels.numpy())
    torch.manual_seed(0)
    save_checkpoint(work / "original.pt", build_model("small_cnn", 2, 1, 16, [0.5], [0.25]))
    return work


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[0]


def test_killed_support_training_resumes_from_the_last_finished_model(work, tmp_path):
    epochs = 30  # a few tenths of a second per support model: the kill lands well inside model 2
    interrupted, reference = tmp_path / "interrupted", tmp_path / "reference"
    killed = python(TRAIN_SUPPORTS, work, interrupted, epochs)
    train_supports(work, reference, epochs, log=lambda line: None)  # uninterrupted, while it starts

    first = interrupted / "support_1.pt"
    log = [killed.stdout.readline() for _ in ALPHAS]  # blocks until support model 2 starts training
    assert log == ["training support model 1\n", "training support model 2\n"], log
    assert first.exists()
    kill(killed)  # SIGKILL while support model 2 trains

    # Nothing half-written that looks finished: every support_*.pt loads; anything else is a temporary.
    for path in interrupted.iterdir():
        if path.name.startswith("support_"):
            assert load_checkpoint(path)[1]["step"] == int(path.stem.split("_")[1])
        else:
            assert path.name.startswith(".") and path.name.endswith(".tmp"), path.name
    assert not (interrupted / "support_2.pt").exists()
    # What a kill during the save of support 2 leaves: a temporary file the re-run must clear away.
    (interrupted / ".support_2.pt.k1ll3d.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")
    kept = (first.read_bytes(), first.stat().st_mtime_ns, first.stat().st_ino)

    resumed_log = []
    train_supports(work, interrupted, epochs, log=resumed_log.append)  # the re-run
    assert resumed_log == ["training support model 2"], "support model 1 must be reused, not trained"
    assert (first.read_bytes(), first.stat().st_mtime_ns, first.stat().st_ino) == kept
    assert sorted(p.name for p in interrupted.iterdir()) == ["support_1.pt", "support_2.pt"]
    for step in range(1, len(ALPHAS) + 1):
        resumed = weights(interrupted / f"support_{step}.pt")
        fresh = weights(reference / f"support_{step}.pt")
        assert resumed.keys() == fresh.keys()
        assert all(torch.equal(resumed[k], fresh[k]) for k in fresh), f"support {step} differs"


def test_the_support_folder_survives_dvc_re_running_the_stage(tmp_path):
    """dvc deletes a stage's outputs before running it, unless they persist: the support folder must,
    and it is where the stage's notebook keeps the checkpoints it resumes from."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    outs = stages["train_support"]["do"]["outs"]
    support_out = [o for o in outs if isinstance(o, dict) and "artifacts/${key}/support" in o]
    assert support_out and support_out[0]["artifacts/${key}/support"].get("persist") is True
    assert ExperimentPaths("exp", root=tmp_path).support_dir == tmp_path / "artifacts" / "exp" / "support"
    calls = [
        node
        for node in ast.walk(ast.parse(notebook_source("notebooks/03_train_support.ipynb")))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "support.train_support_models"
    ]
    folders = [ast.unparse(k.value) for call in calls for k in call.keywords if k.arg == "checkpoint_dir"]
    assert folders == ["paths.support_dir / spec.name"], folders


# ------------------------------------------------------------------ writes killed half-way
KILLED_WRITE = """
    import sys, time
    from pathlib import Path
    import numpy as np
    from gadlib.common import atomic

    writer, target = sys.argv[1], Path(sys.argv[2])

    def half_then_hang(destination, first_bytes):
        with open(destination, "wb") as fh:
            fh.write(first_bytes)
            fh.flush()
        print("half written", flush=True)
        time.sleep(600)

    if writer == "write_json":
        Path.write_text = lambda self, text, **kwargs: half_then_hang(self, text[: len(text) // 2].encode())
        atomic.write_json(target, {"accuracy": 0.99, "version": "new"})
    else:
        np.savez = lambda fh, **arrays: half_then_hang(fh.name, b"PK\\x03\\x04 half an archive")
        atomic.save_arrays(target, gad=np.ones(1000))
"""


@pytest.mark.parametrize(("writer", "previous"), [("write_json", True), ("save_arrays", False)])
def test_a_write_killed_half_way_leaves_the_previous_file(writer, previous, tmp_path):
    target = tmp_path / ("summary.json" if writer == "write_json" else "attributions.npz")
    if previous:
        write_json(target, {"accuracy": 0.5, "version": "old"})
        before = target.read_bytes()
    process = python(KILLED_WRITE, writer, target)
    wait_for(
        lambda: any(tmp_path.glob(".*.tmp")) and process.stdout.readline() == "half written\n",
        process,
        "the write was half done",
    )
    kill(process)

    if previous:
        assert target.read_bytes() == before, "the previous version changed"
    else:
        assert not target.exists(), "a half-written file took the output's name"
    (stale,) = [p for p in tmp_path.iterdir() if p != target]
    assert stale.name.startswith(f".{target.name}.") and stale.name.endswith(".tmp")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert [p.name for p in tmp_path.iterdir()] == ([target.name] if previous else [])


# ------------------------------------------------------------------ every writer goes through atomic_path
RAW_WRITE = re.compile(
    r"open\([^)]*['\"][wax]b?\+?['\"]|\.write_(text|bytes)\(|torch\.save\(|np\.savez?\(|"
    r"np\.savez_compressed\(|\.savefig\(|json\.dump\(|\.to_csv\((?!index=False\))|"
    r"\.to_(parquet|json|pickle)\(|shutil\.copy\w*\(|os\.(rename|replace)\("
)
# A checkpoint is serialised into memory first (its bytes then go through atomic.write_bytes).
ALLOWED = {("gadlib/models/checkpoints.py", "torch.save(state, buffer)")}


def test_every_output_is_written_through_atomic_path():
    sources = {
        str(p.relative_to(ROOT)): p.read_text().splitlines()
        for p in sorted((ROOT / "gadlib").rglob("*.py"))
        if p.name != "atomic.py"  # it is the rule
    }
    assert "gadlib/models/checkpoints.py" in sources and "gadlib/plots.py" in sources
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(notebook, as_version=4).cells
        sources[str(notebook.relative_to(ROOT))] = [
            line for cell in cells if cell.cell_type == "code" for line in cell.source.splitlines()
        ]
    raw = []
    for name, lines in sources.items():
        for number, line in enumerate(lines):
            if not RAW_WRITE.search(line) or (name, line.strip()) in ALLOWED:
                continue
            # inside `with atomic_path(...) as tmp:`, writing to the temporary
            inside = any("atomic_path(" in above for above in lines[max(0, number - 4) : number])
            if not (inside and "tmp" in line):
                raw.append(f"{name}:{number + 1}: {line.strip()}")
    assert raw == [], "outputs written without gadlib.common.atomic:\n" + "\n".join(raw)
