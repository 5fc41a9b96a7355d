"""The stage runner: parameters are checked before the kernel starts; output is all or nothing."""

from __future__ import annotations

import nbformat
import pytest
from papermill.exceptions import PapermillExecutionError

from gadlib.pipeline import stage
from gadlib.pipeline.params import ConfigError, validate_params
from gadlib.pipeline.paths import PARAMS_FILE
from gadlib.pipeline.stage import StageError, check_parameters, run_stage

EXPERIMENT = "tshirt_vs_shirt"


def write_notebook(path, *cells: str):
    """A notebook whose first cell, tagged 'parameters', declares ``experiment = None``."""
    parameters = nbformat.v4.new_code_cell("experiment = None")
    parameters.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[parameters] + [nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebook(tmp_path):
    return write_notebook(tmp_path / "stage.ipynb", "print('running', experiment)")


def test_declared_parameters_pass(notebook, params):
    check_parameters(notebook, {"experiment": EXPERIMENT}, validate_params(params))
    check_parameters(notebook, {}, validate_params(params))


def test_an_undeclared_parameter_is_named(notebook, params):
    declares = r"does not declare parameter\(s\) \['epochs'\]; it declares \['experiment'\]"
    with pytest.raises(StageError, match=declares):
        check_parameters(notebook, {"experiment": EXPERIMENT, "epochs": 3}, validate_params(params))


def test_an_unknown_experiment_is_named(notebook, params):
    with pytest.raises(StageError, match=f"unknown experiment 'nope'; params.yaml defines .*'{EXPERIMENT}'"):
        check_parameters(notebook, {"experiment": "nope"}, validate_params(params))


def test_a_missing_notebook(tmp_path, params):
    with pytest.raises(FileNotFoundError, match="missing.ipynb does not exist"):
        check_parameters(tmp_path / "missing.ipynb", {}, validate_params(params))


def test_problems_stop_the_stage_before_the_kernel_starts(notebook, tmp_path):
    output = tmp_path / "out" / "stage.ipynb"
    with pytest.raises(StageError):
        run_stage(notebook, output, {"experiment": "nope"}, PARAMS_FILE)
    bad_params = tmp_path / "params.yaml"
    bad_params.write_text(PARAMS_FILE.read_text().replace("seed: 0", "seed: -1", 1))
    with pytest.raises(ConfigError, match="'seed' = -1"):
        run_stage(notebook, output, {"experiment": EXPERIMENT}, bad_params)
    assert not output.exists()
    assert stage.main([str(notebook), str(output), "-p", "experiment", "nope"]) == 2


def test_run_stage_executes_or_leaves_only_the_failed_copy(notebook, tmp_path):
    output = tmp_path / "out" / "stage.ipynb"
    failed = tmp_path / "out" / "stage.failed.ipynb"
    failing = write_notebook(tmp_path / "failing.ipynb", "raise RuntimeError('boom')")
    with pytest.raises(PapermillExecutionError, match="boom"):
        run_stage(failing, output, {"experiment": EXPERIMENT}, PARAMS_FILE)
    assert not output.exists() and failed.is_file()
    assert "boom" in failed.read_text()
    assert [p.name for p in output.parent.iterdir()] == [failed.name]  # no temporary file left behind

    run_stage(notebook, output, {"experiment": EXPERIMENT}, PARAMS_FILE)
    executed = nbformat.read(output, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and f'experiment = "{EXPERIMENT}"' in injected[0].source
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert f"running {EXPERIMENT}" in printed
    assert not failed.exists()  # a success clears the earlier failure's copy
