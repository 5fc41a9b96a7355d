"""A broken params.yaml or an undeclared notebook parameter stops a stage before any work.

Through the real stage command, `python -m gadlib.pipeline.stage NOTEBOOK OUTPUT -p experiment X` as dvc.yaml
calls it: every fault exits non-zero with one line naming the key, the value and what is allowed,
and the notebook is never executed (no output, no failed copy). In-process for the whole list of
faults (milliseconds each), and as real subprocesses in temporary copies of the repository for two.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import nbformat
import papermill
import pytest
import yaml

from gadlib.pipeline import stage
from gadlib.pipeline.params import read_yaml
from gadlib.pipeline.paths import PARAMS_FILE, ROOT
from tests.fixtures import copy_repository, repository_env

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
    params = read_yaml(PARAMS_FILE.read_text())
    FAULTS[fault][0](params)
    return yaml.safe_dump(params, sort_keys=False)


@pytest.fixture
def no_kernel(monkeypatch):
    """Fails the test if the stage gets as far as executing the notebook."""

    def execute(*args, **kwargs):
        raise AssertionError("the notebook was executed although the stage should have stopped first")

    monkeypatch.setattr(papermill, "execute_notebook", execute)


@pytest.mark.parametrize("fault", FAULTS)
def test_stage_command_names_the_bad_key(fault, tmp_path, monkeypatch, capsys, no_kernel):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(broken_params(fault))
    monkeypatch.setattr(stage, "PARAMS_FILE", params_file)
    output = tmp_path / "out" / "01_prepare.ipynb"
    code = stage.main([str(ROOT / NOTEBOOK), str(output), "-p", "experiment", EXPERIMENT])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, f"one line of error expected; got {err!r}"
    for fragment in FAULTS[fault][1]:
        assert fragment in err, f"{fragment!r} missing from the message {err!r}"
    assert not output.parent.exists() or not any(output.parent.iterdir())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["-p", "experiment", EXPERIMENT, "-p", "bogus", "1"],
            "does not declare parameter(s) ['bogus']; it declares ['experiment']",
        ),
        (["-p", "experiment", "nope"], "unknown experiment 'nope'; params.yaml defines ['tshirt_vs_shirt'"),
    ],
)
def test_stage_command_refuses_undeclared_parameters(argv, message, tmp_path, capsys, no_kernel):
    output = tmp_path / "out" / "01_prepare.ipynb"
    code = stage.main([str(ROOT / NOTEBOOK), str(output), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not output.exists()


# ------------------------------------------------------------------ real subprocesses, repository copies
SUBPROCESS_CASES = {  # fault -> (params.yaml text or None for the repository's, extra arguments, message)
    "class not in the dataset": ("class not in the dataset", [], f"'experiments.{EXPERIMENT}.classes' has 'Cat'"),
    "undeclared parameter": (None, ["-p", "bogus", "1"], "does not declare parameter(s) ['bogus']"),
}
STAGE_SECONDS = 60  # generous on a loaded 2-core machine; the kernel would start only after this check


@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory):
    """Each case's stage command run in its own copy of the repository, all at once."""

    def run(name: str):
        fault, extra, _ = SUBPROCESS_CASES[name]
        repo = copy_repository(tmp_path_factory.mktemp("config") / "repo")
        if fault is not None:
            (repo / "params.yaml").write_text(broken_params(fault))
        output = "stage_output/01_prepare.ipynb"
        cmd = [sys.executable, "-m", "gadlib.pipeline.stage", NOTEBOOK, output, "-p", "experiment", EXPERIMENT, *extra]
        start = time.perf_counter()
        result = subprocess.run(
            cmd, cwd=repo, env=repository_env(repo), capture_output=True, text=True, timeout=10 * STAGE_SECONDS
        )
        return repo, result, time.perf_counter() - start

    with ThreadPoolExecutor(len(SUBPROCESS_CASES)) as pool:
        return dict(zip(SUBPROCESS_CASES, pool.map(run, SUBPROCESS_CASES), strict=True))


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_stage_subprocess_stops_before_the_notebook(case, subprocess_results):
    repo, result, seconds = subprocess_results[case]
    assert result.returncode == 2, result.stderr
    assert SUBPROCESS_CASES[case][2] in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not (repo / "stage_output").exists(), "no executed notebook, no failed copy, no temporary file"
    assert not (repo / "artifacts").exists(), "the prepare stage wrote artifacts although it should not start"
    assert seconds < STAGE_SECONDS


def test_without_a_fault_the_stage_reaches_the_notebook(tmp_path, monkeypatch):
    """The control: the repository's params.yaml and declared parameters go on to papermill."""
    calls = []

    def execute(*args, **kwargs):
        calls.append(kwargs)
        return nbformat.v4.new_notebook()

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    output = tmp_path / "out" / "01_prepare.ipynb"
    assert stage.main([str(ROOT / NOTEBOOK), str(output), "-p", "experiment", EXPERIMENT]) == 0
    assert [c["parameters"] for c in calls] == [{"experiment": EXPERIMENT}]
