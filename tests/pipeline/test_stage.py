"""The stage runner: parameters are checked before the kernel starts; output is all or nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv

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


def test_executed_notebooks_are_tidied_for_reading_and_diffing(tmp_path):
    nb = nbformat.v4.new_notebook()
    injected = nbformat.v4.new_code_cell('experiment = "x"')
    injected.metadata.update(tags=["injected-parameters"], papermill={"start_time": "t0", "status": "completed"})
    work = nbformat.v4.new_code_cell("work()")
    work.metadata.update(execution={"iopub.status.busy": "t1"}, papermill={"duration": 1.5, "exception": False})
    work.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="\rbar:  50%\rbar: 100%\n"),
        nbformat.v4.new_output("stream", name="stderr", text="second line\n"),
        nbformat.v4.new_output("stream", name="stdout", text="printed\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "1"}, execution_count=1),
        nbformat.v4.new_output("stream", name="stdout", text=""),
    ]
    nb.cells = [injected, work]
    nb.metadata["papermill"] = {"output_path": str(stage.ROOT / "reports" / ".x.ipynb.abc.tmp"), "duration": 3.0}
    stage.tidy_executed(nb, stage.ROOT / "reports" / "x.ipynb")
    assert injected.id == "injected-parameters"
    assert injected.metadata.papermill == {"status": "completed"}
    assert "execution" not in work.metadata and work.metadata.papermill == {"exception": False}
    assert [(o.output_type, o.get("text")) for o in work.outputs] == [
        ("stream", "bar: 100%\nsecond line\n"),
        ("stream", "printed\n"),
        ("execute_result", None),
    ]
    assert nb.metadata.papermill == {"output_path": "reports/x.ipynb", "duration": 3.0}
    nbformat.validate(nb)


def last_cell_outputs(tmp_path, name: str, source: str) -> list:
    """Run a one-cell notebook as a stage (experiment EXPERIMENT); the executed cell's outputs."""
    output = tmp_path / "out" / f"{name}.ipynb"
    run_stage(write_notebook(tmp_path / f"{name}.ipynb", source), output, {"experiment": EXPERIMENT}, PARAMS_FILE)
    return nbformat.read(output, as_version=4).cells[-1].outputs


def test_a_stage_run_leaves_one_line_per_quick_progress_bar_on_stdout(tmp_path, monkeypatch):
    monkeypatch.delenv("GADLIB_PROGRESS", raising=False)
    loop = "from gadlib.common.progress import tqdm\nfor i in tqdm(range(200), desc='work', mininterval=0): pass"
    outputs = last_cell_outputs(tmp_path, "bars", loop)
    assert len(outputs) == 1 and outputs[0].name == "stdout"
    assert outputs[0].text.count("\n") == 1 and "200/200" in outputs[0].text


def test_a_python_without_the_stack_reexecutes_with_the_repository_venv(tmp_path, monkeypatch):
    calls = []

    class Replaced(Exception):
        """os.execv replaces the process: it never returns."""

    def execv(path, args):
        calls.append((path, args))
        raise Replaced

    monkeypatch.setattr(stage, "missing_stack_module", lambda: "pydantic")
    monkeypatch.setattr(stage.os, "execv", execv)
    monkeypatch.setenv(stage.REEXEC_ENV, "")  # unset for the command; restored after the test
    venv_python = tmp_path / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("")
    with pytest.raises(Replaced):
        stage.ensure_stack(tmp_path, ["nb.ipynb", "out.ipynb", "-p", "experiment", "x"])
    assert calls == [
        (
            str(venv_python),
            [str(venv_python), "-m", "gadlib.pipeline.stage", "nb.ipynb", "out.ipynb", "-p", "experiment", "x"],
        )
    ]
    # re-executed once: if .venv lacks the module too, the command stops instead of looping
    with pytest.raises(SystemExit, match=r"cannot import 'pydantic'.*lacks it too.*source \.venv/bin/activate"):
        stage.ensure_stack(tmp_path, [])
    assert len(calls) == 1


def test_a_python_without_the_stack_and_without_a_venv_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "missing_stack_module", lambda: "papermill")
    monkeypatch.setenv(stage.REEXEC_ENV, "")
    with pytest.raises(SystemExit) as stop:
        stage.ensure_stack(tmp_path, [])
    message = str(stop.value.code)
    assert "\n" not in message and "cannot import 'papermill'" in message
    assert "`source .venv/bin/activate` (or `make shell`)" in message
    monkeypatch.setattr(stage, "missing_stack_module", lambda: None)
    stage.ensure_stack(tmp_path, [])  # the stack is there: nothing happens


def test_the_stage_command_on_a_bare_python(tmp_path):
    """End to end with real interpreters: a bare venv (no packages) running the stage command in a
    repository copy stops with the one line, and with a .venv beside it that has the stack, runs there."""
    repo = tmp_path / "repo"
    shutil.copytree(stage.ROOT / "gadlib", repo / "gadlib", ignore=shutil.ignore_patterns("__pycache__"))
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)
    command = [str(bare / "bin" / "python"), "-m", "gadlib.pipeline.stage", "--help"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", stage.REEXEC_ENV)}
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "cannot import 'yaml'" in result.stderr and "source .venv/bin/activate" in result.stderr

    # a .venv that sees this interpreter's packages (a .pth file), as `make setup` would have made it
    venv.create(repo / ".venv", with_pip=False)
    site = next((repo / ".venv" / "lib").glob("python*/site-packages"))
    (site / "stack.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_figures_are_saved_in_the_executed_notebook_whatever_the_callers_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # as `make` exports it
    monkeypatch.delenv("GADLIB_PROGRESS", raising=False)
    plot = "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0]);"
    outputs = last_cell_outputs(tmp_path, "figure", plot)
    assert [o.output_type for o in outputs] == ["display_data"] and "image/png" in outputs[0].data
    assert os.environ["MPLBACKEND"] == "Agg" and "GADLIB_PROGRESS" not in os.environ  # restored
