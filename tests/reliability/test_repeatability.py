"""Two runs of the tiny profile with the same seed give identical results on the CPU; another seed
gives other ones. Each run is a full `dvc repro` in its own copy of the repository (a minute or two),
so the session's shared run (tiny_pipeline, tests/conftest.py) is the first of the three. And, in
seconds: the classifier's initial weights follow params.yaml's seed, not the process's random state
(notebooks/02_train_classifier.ipynb's code, run in this process with the training left out).
"""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from gadlib.common.atomic import load_arrays
from gadlib.data.prepared import save_prepared
from gadlib.models import training
from gadlib.models.checkpoints import load_checkpoint
from gadlib.project.paths import ExperimentPaths
from tests.fixtures import ROOT, SMALL_CNN_EXPERIMENT, run_command, tiny_prepared_data, tiny_profile_repository

# Columns and keys that measure the machine, not the method: they differ between identical runs.
TIMINGS = (
    "train_seconds",
    "seconds",
    "seconds_per_image",
    "plain_seconds",
    "plain_seconds_per_image",
    "gad_over_plain",
)


def rerun(tmp_path, seed: int):
    repo = tiny_profile_repository(tmp_path / "repo", seed=seed)
    run_command(["dvc", "repro"], repo)
    return repo


def experiment_files(repo, name: str) -> dict:
    """Everything an experiment's stages computed, in comparable form (timings left out)."""
    reports, artifacts = repo / "reports" / "experiments" / name, repo / "artifacts" / name
    classifier = json.loads((reports / "classifier.json").read_text())
    files = {
        "summary.json": (reports / "summary.json").read_text(),
        "hull_metrics.csv": (reports / "hull_metrics.csv").read_text(),
        "fidelity.csv": pd.read_csv(reports / "fidelity.csv").drop(columns=list(TIMINGS), errors="ignore"),
        "classifier.json": {k: v for k, v in classifier.items() if k not in TIMINGS},
        "prepared.npz": load_arrays(artifacts / "prepared.npz"),
        "classifier.pt": load_checkpoint(artifacts / "classifier.pt")[0],
    }
    for path in sorted((artifacts / "support").rglob("*.pt")):
        files[str(path.relative_to(artifacts))] = load_checkpoint(path)[0]
    for path in sorted((artifacts / "attributions").glob("*.npz")):
        files[f"attributions/{path.name}"] = load_arrays(path)
    return files


def same(a, b) -> bool:
    if isinstance(a, pd.DataFrame):
        return a.equals(b)
    if isinstance(a, dict) and a and all(hasattr(v, "shape") for v in a.values()):
        return a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)
    return a == b


def differences(first, second, experiments) -> list[str]:
    out = []
    for name in experiments:
        ours, theirs = experiment_files(first, name), experiment_files(second, name)
        out += [
            f"{name}/{key}"
            for key in sorted(ours.keys() | theirs.keys())
            if key not in ours or key not in theirs or not same(ours[key], theirs[key])
        ]
    return out


@pytest.mark.pipeline
def test_the_same_seed_gives_identical_results(tiny_pipeline, tmp_path):
    second = rerun(tmp_path, seed=tiny_pipeline.params["seed"])
    first = tiny_pipeline.repo
    metrics = "reports/metrics.json"
    assert (second / metrics).read_bytes() == (first / metrics).read_bytes()
    assert differences(first, second, tiny_pipeline.params["experiments"]) == []


@pytest.mark.pipeline
def test_another_seed_gives_other_results(tiny_pipeline, tmp_path):
    assert tiny_pipeline.params["seed"] != 1
    other = rerun(tmp_path, seed=1)
    first = tiny_pipeline.repo
    ours = json.loads((first / "reports" / "metrics.json").read_text())
    theirs = json.loads((other / "reports" / "metrics.json").read_text())
    assert ours.keys() == theirs.keys() and ours != theirs
    changed = differences(first, other, tiny_pipeline.params["experiments"])
    for name in tiny_pipeline.params["experiments"]:  # the seed reaches the data, the weights, the maps
        assert {f"{name}/prepared.npz", f"{name}/classifier.pt", f"{name}/hull_metrics.csv"} <= set(changed)


def run_notebook_code(notebook: str, **parameters) -> dict:
    """Execute the notebook's code cells in this process, ``parameters`` set after its parameters
    cell as papermill sets them (IPython magics dropped); its variables at the end."""
    namespace: dict = {"__name__": "__main__"}
    for number, cell in enumerate(nbformat.read(ROOT / notebook, as_version=4).cells):
        if cell.cell_type != "code":
            continue
        lines = [line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        exec(compile("\n".join(lines), f"{notebook}, cell {number}", "exec"), namespace)
        if "parameters" in cell.metadata.get("tags", []):
            namespace.update(parameters)
    return namespace


@pytest.mark.usefixtures("close_figures")
def test_the_classifier_starts_from_the_seed_s_weights(params, project_dir, monkeypatch):
    one_epoch = training.TrainHistory(train_loss=[1.0], val_loss=[1.0], val_accuracy=[0.5], best_epoch=1)
    monkeypatch.setattr(training, "train_model", lambda *args, **kwargs: one_epoch)  # weights stay as built
    params["experiments"] = {"exp": dict(SMALL_CNN_EXPERIMENT)}
    save_prepared(ExperimentPaths("exp").prepared, tiny_prepared_data())

    def initial_weights(seed: int) -> dict:
        params["seed"] = seed
        (project_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        torch.rand(7)  # whatever ran before in the kernel must not matter
        run_notebook_code("notebooks/02_train_classifier.ipynb", experiment="exp")
        return load_checkpoint(ExperimentPaths("exp").classifier)[0]  # what the stage saved

    first, again, other = initial_weights(0), initial_weights(0), initial_weights(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
