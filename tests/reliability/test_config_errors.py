"""A broken params.yaml or an undeclared notebook parameter stops a stage before any work.

Every stage notebook calls `load_params()` in its first code cell: each fault of params.yaml is one line
naming the key, the value and what is allowed, checked here through `load_params` for the whole list
(milliseconds each). Through the real stage command, `python -m tools.run_notebook NOTEBOOK OUTPUT -p
experiment X` as dvc.yaml calls it, in temporary copies of the repository: a broken params.yaml stops the
notebook in that first cell (exit 1, one line, nothing prepared); a parameter the notebook does not
declare stops the command before a kernel starts (exit 2, one line, no output).
"""

from __future__ import annotations

import subprocess
import sys
import time

import nbformat
import pytest
import yaml

from gadlib.project.params import ConfigError, load_params, read_yaml
from tests.fixtures import ROOT, copy_repository, repository_env

NOTEBOOK = "notebooks/01_prepare.ipynb"
EXPERIMENT = "tshirt_vs_shirt"


def _set(section: str | None, key: str, value):
    def edit(params: dict) -> None:
        (params[section] if section else params)[key] = value

    return edit


def _set_experiment(key: str, value):
    def edit(params: dict) -> None:
        params["experiments"][EXPERIMENT][key] = value

    return edit


def _delete(section: str, key: str):
    def edit(params: dict) -> None:
        del params[section][key]

    return edit


# (fault, edit of params.yaml, what the one error line must say: key, value, what is allowed)
FAULTS = {
    "unknown top-level key": (_set(None, "sede", 0), ["unknown key 'sede'", "allowed keys here", "'seed'"]),
    "unknown nested key": (_set("support", "alpha", [1.0]), ["unknown key 'support.alpha'", "'alphas'"]),
    "missing key": (_delete("classifier", "lr"), ["missing key 'classifier.lr'"]),
    "wrong type": (_set("classifier", "epochs", "six"), ["'classifier.epochs' = 'six'", "expected an integer >= 1"]),
    "float for an integer": (_set("attribution", "n_images", 2.5), ["'attribution.n_images' = 2.5", "an integer >= 1"]),
    "boolean for an integer": (
        _set("classifier", "batch_size", True),
        ["'classifier.batch_size' = True", "an integer >= 1"],
    ),
    "negative seed": (_set(None, "seed", -1), ["'seed' = -1", "an integer >= 0"]),
    "alpha schedule not increasing": (
        _set("support", "alphas", [1.0, 0.5]),
        ["'support.alphas' = [1.0, 0.5]", "strictly increasing"],
    ),
    "K = 0": (_set("support", "alphas", []), ["'support.alphas' = []", "K = its length >= 1"]),
    "quantile 1": (_set("attribution", "q", 1.0), ["'attribution.q' = 1.0", "strictly between 0 and 1"]),
    "quantile 0": (_set("regions", "q", 0), ["'regions.q' = 0", "strictly between 0 and 1"]),
    "unknown method": (
        _set("attribution", "methods", ["Saliency", "Occlusion"]),
        ["'attribution.methods' = ['Saliency', 'Occlusion']", "'IntegratedGradients'"],
    ),
    "unknown architecture": (
        _set_experiment("architecture", "resnet50"),
        [f"'experiments.{EXPERIMENT}.architecture' = 'resnet50'", "'resnet18'"],
    ),
    "unknown dataset": (
        _set_experiment("dataset", "mnist"),
        [f"'experiments.{EXPERIMENT}.dataset' = 'mnist'", "'fashion_mnist'"],
    ),
    "class not in the dataset": (
        _set_experiment("classes", ["T-shirt/top", "Cat"]),
        [f"'experiments.{EXPERIMENT}.classes' has 'Cat'", "not a fashion_mnist class", "'Shirt'"],
    ),
    "one class for a pair": (
        _set_experiment("classes", ["Shirt"]),
        [f"'experiments.{EXPERIMENT}.classes' = ['Shirt']", "at least two"],
    ),
    "min_agreement above K + 1": (
        _set("attribution", "min_agreement", 9),
        ["'attribution.min_agreement' = 9", "K + 1 = 6"],
    ),
    "experiments not a mapping": (_set(None, "experiments", ["a", "b"]), ["'experiments' = ['a', 'b']", "mapping"]),
}


def broken_params(fault: str) -> str:
    params = read_yaml((ROOT / "params.yaml").read_text())
    FAULTS[fault][0](params)
    return yaml.safe_dump(params, sort_keys=False)


@pytest.mark.parametrize("fault", FAULTS)
def test_load_params_names_the_bad_key(fault, tmp_path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(broken_params(fault))
    with pytest.raises(ConfigError) as error:
        load_params(params_file)
    message = str(error.value)
    assert message.startswith(f"{params_file}: ") and "\n" not in message, f"one line expected; got {message!r}"
    for fragment in FAULTS[fault][1]:
        assert fragment in message, f"{fragment!r} missing from the message {message!r}"


def test_without_a_fault_the_same_round_trip_loads(tmp_path):
    """The control: the repository's params.yaml, read and dumped as broken_params does, validates."""
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(read_yaml((ROOT / "params.yaml").read_text()), sort_keys=False))
    assert EXPERIMENT in load_params(params_file).experiment_names


# ------------------------------------------------------------------ real subprocesses, repository copies
OUTPUT = "stage_output/01_prepare.ipynb"
STAGE_SECONDS = 60  # generous on a loaded 2-core machine for a check made before the kernel starts


def stage_command(repo, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    """The prepare stage's command, as dvc.yaml runs it, in the repository copy ``repo``; its seconds."""
    cmd = [sys.executable, "-m", "tools.run_notebook", NOTEBOOK, OUTPUT, "-p", "experiment", EXPERIMENT, *extra]
    env = repository_env(repo)
    env.pop("DVC_ROOT", None)  # the project is the working directory, as in a dvc stage
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=10 * STAGE_SECONDS)
    return result, time.perf_counter() - start


def test_a_broken_params_yaml_stops_the_stage_before_a_kernel_starts(tmp_path):
    repo = copy_repository(tmp_path / "repo")
    (repo / "params.yaml").write_text(broken_params("class not in the dataset"))
    result, seconds = stage_command(repo)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert f"'experiments.{EXPERIMENT}.classes' has 'Cat'" in result.stderr
    assert "not a fashion_mnist class" in result.stderr and "'Shirt'" in result.stderr  # key, value, what is allowed
    assert not (repo / "stage_output").exists(), "no executed notebook: the kernel never started"
    assert not list(repo.glob("artifacts/**/*.npz")), "nothing prepared"
    assert seconds < STAGE_SECONDS


@pytest.mark.pipeline  # starts a Jupyter kernel: about 15 s
def test_the_notebook_itself_stops_in_its_first_code_cell(tmp_path, monkeypatch):
    """Run in JupyterLab (or by papermill alone), the notebook validates params.yaml before any work."""
    from papermill.exceptions import PapermillExecutionError

    from tools.run_notebook import run

    repo = copy_repository(tmp_path / "repo")
    (repo / "params.yaml").write_text(broken_params("class not in the dataset"))
    monkeypatch.chdir(repo)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    with pytest.raises(PapermillExecutionError) as failure:
        run(repo / NOTEBOOK, repo / OUTPUT, {"experiment": EXPERIMENT}, repo)
    assert (
        failure.value.ename == "ConfigError" and f"'experiments.{EXPERIMENT}.classes' has 'Cat'" in failure.value.evalue
    )
    executed = nbformat.read(repo / OUTPUT, as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in code]
    assert "parameters" in tags[0] and "injected-parameters" in tags[1]
    failed = [c for c in code if any(o.output_type == "error" for o in c.outputs)]
    assert failed == [code[2]], "the first code cell after the parameters stops the run"
    assert all(not c.outputs and c.execution_count is None for c in code[3:]), "no cell ran after the error"
    assert not list(repo.glob("artifacts/**/*.npz")), "nothing prepared"


def test_an_undeclared_parameter_stops_the_stage_before_a_kernel_starts(tmp_path):
    repo = copy_repository(tmp_path / "repo")
    result, seconds = stage_command(repo, "-p", "bogus", "1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "does not declare parameter(s) ['bogus']; it declares ['experiment']" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (repo / "stage_output").exists(), "no executed notebook, no temporary file"
    assert not list(repo.glob("artifacts/**/*.npz")), "the prepare stage wrote artifacts although it should not start"
    assert seconds < STAGE_SECONDS
