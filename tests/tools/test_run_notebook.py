"""The stage runner, ``python -m tools.run_notebook NOTEBOOK OUTPUT -p NAME VALUE ...``: a parameter the
notebook does not declare stops it before a kernel starts; a failing cell is one line, with the executed
part at OUTPUT; the executed copy is tidied; a python without the stack re-runs under .venv or stops in
one line. Throwaway notebooks in tmp_path; the tests that start a kernel are marked ``pipeline``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv

import nbformat
import papermill
import pytest
import yaml

from tests.fixtures import ROOT
from tools import run_notebook
from tools.run_notebook import run, tidy_executed

EXPERIMENT = "tshirt_vs_shirt"


def write_notebook(path, *cells: str):
    """A notebook whose first cell, tagged 'parameters', declares ``experiment = None`` and ``n_shown = 3``."""
    parameters = nbformat.v4.new_code_cell("experiment = None\nn_shown = 3")
    parameters.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[parameters] + [nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebook(tmp_path):
    return write_notebook(tmp_path / "stage.ipynb", "print('running', experiment)")


@pytest.fixture
def progress_env(monkeypatch):
    """GADLIB_PROGRESS unset for the test and as it was afterwards (run() sets it in this process)."""
    monkeypatch.setenv("GADLIB_PROGRESS", "recorded")  # so that monkeypatch restores the original state
    monkeypatch.delenv("GADLIB_PROGRESS")


@pytest.fixture
def no_kernel(monkeypatch):
    """Fails the test if the runner gets as far as executing the notebook."""

    def execute(*args, **kwargs):
        raise AssertionError("the notebook was executed although the runner should have stopped first")

    monkeypatch.setattr(papermill, "execute_notebook", execute)


def only_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1, f"one line of error expected; got {err!r}"
    return err


# --------------------------------------------------------------------------- before the kernel
def test_an_undeclared_parameter_is_refused_before_a_kernel_starts(notebook, tmp_path, capsys, no_kernel):
    output = tmp_path / "out" / "stage.ipynb"
    declares = r"does not declare parameter\(s\) \['epochs'\]; it declares \['experiment', 'n_shown'\]"
    with pytest.raises(ValueError, match=declares):
        run(notebook, output, {"experiment": EXPERIMENT, "epochs": 3}, tmp_path)
    assert not output.parent.exists()
    assert run_notebook.main([str(notebook), str(output), "-p", "experiment", "x", "-p", "epochs", "3"]) == 2
    assert "does not declare parameter(s) ['epochs']" in only_line(capsys.readouterr().err)
    assert not output.parent.exists()


def test_a_missing_notebook_is_one_line(tmp_path, capsys, no_kernel):
    missing, output = tmp_path / "missing.ipynb", tmp_path / "out" / "missing.ipynb"
    with pytest.raises(FileNotFoundError, match="missing.ipynb"):
        run(missing, output, {}, tmp_path)
    assert run_notebook.main([str(missing), str(output)]) == 2
    assert str(missing) in only_line(capsys.readouterr().err)
    assert not output.parent.exists()


def test_declared_parameters_reach_papermill_as_yaml_values(notebook, tmp_path, monkeypatch, progress_env):
    calls = []

    def execute(source, target, **kwargs):
        calls.append({"target": target, "progress": os.environ.get("GADLIB_PROGRESS"), **kwargs})
        return nbformat.v4.new_notebook()

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    monkeypatch.chdir(tmp_path)  # the working directory is the project root, as under dvc
    argv = ["stage.ipynb", "out/stage.ipynb", "-p", "experiment", EXPERIMENT, "-p", "n_shown", "5"]
    assert run_notebook.main(argv) == 0
    assert [c["parameters"] for c in calls] == [{"experiment": EXPERIMENT, "n_shown": 5}]  # 5: an int, as YAML
    assert calls[0]["target"] == "out/stage.ipynb" and calls[0]["kernel_name"] == "python3"
    assert calls[0]["progress"] == "log"  # progress bars as whole lines in the executed notebook
    written = nbformat.read(tmp_path / "out" / "stage.ipynb", as_version=4)
    assert written.metadata.gadlib["stage_seconds"] > 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["stage.ipynb"]  # no temporary left behind

    monkeypatch.setenv("GADLIB_PROGRESS", "text")  # the caller's choice is kept
    assert run_notebook.main(argv) == 0
    assert calls[1]["progress"] == "text"


# --------------------------------------------------------------------------- the executed copy
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
    output = tmp_path / "reports" / "x.ipynb"
    nb.metadata["papermill"] = {"output_path": str(output), "duration": 3.0}
    tidy_executed(nb, output, tmp_path)
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

    elsewhere = tmp_path.parent / "elsewhere.ipynb"  # outside the root: the path as given
    tidy_executed(nb, elsewhere, tmp_path / "reports")
    assert nb.metadata.papermill["output_path"] == str(elsewhere)


@pytest.mark.pipeline  # starts a Jupyter kernel twice: a few seconds
def test_a_failing_cell_is_one_line_and_leaves_the_executed_part_at_output(tmp_path, monkeypatch, capsys, progress_env):
    monkeypatch.chdir(tmp_path)  # relative paths, as dvc.yaml gives them
    write_notebook(tmp_path / "failing.ipynb", "print('before')", "raise RuntimeError('boom')", "print('never')")
    assert run_notebook.main(["failing.ipynb", "out/stage.ipynb", "-p", "experiment", EXPERIMENT]) == 1
    err = capsys.readouterr().err
    # cells: parameters (1), injected parameters (2), print (3), raise (4)
    assert err == (
        "error: failing.ipynb failed in cell 4: RuntimeError: boom\n"
        "The executed part, with the traceback, is in out/stage.ipynb\n"
    )
    output = tmp_path / "out" / "stage.ipynb"
    assert sorted(p.name for p in output.parent.iterdir()) == ["stage.ipynb"]  # no other copy, no temporary
    partial = nbformat.read(output, as_version=4)
    outputs = [o for c in partial.cells for o in c.get("outputs", [])]
    assert any(o.output_type == "stream" and "before" in o.text for o in outputs)
    errors = [o for o in outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "RuntimeError" and errors[0].evalue == "boom"
    assert "never" not in json.dumps([c.get("outputs", []) for c in partial.cells])

    write_notebook(tmp_path / "stage.ipynb", "print('running', experiment)")
    assert run_notebook.main(["stage.ipynb", "out/stage.ipynb", "-p", "experiment", EXPERIMENT]) == 0
    assert capsys.readouterr().err == ""
    executed = nbformat.read(output, as_version=4)  # the finished copy replaced the partial one
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and f'experiment = "{EXPERIMENT}"' in injected[0].source
    assert injected[0].id == "injected-parameters"
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert f"running {EXPERIMENT}" in printed and "boom" not in json.dumps(executed)
    assert executed.metadata.papermill["output_path"] == "out/stage.ipynb"
    # the stage's wall time, kernel start included: at least papermill's own duration
    assert executed.metadata.gadlib["stage_seconds"] >= executed.metadata.papermill["duration"] > 0
    assert sorted(p.name for p in output.parent.iterdir()) == ["stage.ipynb"]


def last_cell_outputs(tmp_path, name: str, source: str) -> list:
    """Run a one-cell notebook with the runner (experiment EXPERIMENT); the executed cell's outputs."""
    output = tmp_path / "out" / f"{name}.ipynb"
    run(write_notebook(tmp_path / f"{name}.ipynb", source), output, {"experiment": EXPERIMENT}, tmp_path)
    return nbformat.read(output, as_version=4).cells[-1].outputs


@pytest.mark.pipeline  # starts a Jupyter kernel: a few seconds
def test_a_run_leaves_one_line_per_quick_progress_bar_on_stdout(tmp_path, progress_env):
    loop = "from gadlib.common.progress import tqdm\nfor i in tqdm(range(200), desc='work', mininterval=0): pass"
    outputs = last_cell_outputs(tmp_path, "bars", loop)
    assert len(outputs) == 1 and outputs[0].name == "stdout"
    assert outputs[0].text.count("\n") == 1 and "200/200" in outputs[0].text


@pytest.mark.pipeline  # starts a Jupyter kernel: a few seconds
def test_figures_are_saved_in_the_executed_notebook_whatever_the_callers_backend(tmp_path, monkeypatch, progress_env):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # as `make` exports it
    plot = "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0]);"  # as the stages do
    outputs = last_cell_outputs(tmp_path, "figure", plot)
    assert [o.output_type for o in outputs] == ["display_data"] and "image/png" in outputs[0].data


def test_every_stage_notebook_draws_inline_whatever_the_callers_backend():
    """What the test above relies on: each notebook dvc.yaml runs selects the inline backend itself, in
    its first code cell after the parameters."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    notebooks = sorted({stage.get("do", stage)["cmd"].split()[3] for stage in stages.values()})
    assert len(notebooks) == 6
    for name in notebooks:
        cells = [c for c in nbformat.read(ROOT / name, as_version=4).cells if c.cell_type == "code"]
        assert "parameters" in cells[0].metadata.get("tags", []), name
        assert cells[1].source.splitlines()[0] == "%matplotlib inline", name


# --------------------------------------------------------------------------- a python without the stack
MISSING = "gadlib_test_module_that_is_not_installed"


def test_a_python_without_the_stack_reexecutes_with_the_repository_venv(tmp_path, monkeypatch):
    calls = []

    class Replaced(Exception):
        """os.execv replaces the process: it never returns."""

    def execv(path, args):
        calls.append((path, args))
        raise Replaced

    monkeypatch.setattr(run_notebook, "STACK_MODULES", ("yaml", MISSING))
    monkeypatch.setattr(run_notebook.os, "execv", execv)
    monkeypatch.setenv(run_notebook.REEXEC_ENV, "")  # unset for the command; restored after the test
    venv_python = tmp_path / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("")
    with pytest.raises(Replaced):
        run_notebook.ensure_stack(tmp_path, ["nb.ipynb", "out.ipynb", "-p", "experiment", "x"])
    assert calls == [
        (
            str(venv_python),
            [str(venv_python), "-m", "tools.run_notebook", "nb.ipynb", "out.ipynb", "-p", "experiment", "x"],
        )
    ]
    # re-executed once: if .venv lacks the module too, the command stops instead of looping
    with pytest.raises(SystemExit, match=rf"cannot import '{MISSING}'.*lacks it too.*source \.venv/bin/activate"):
        run_notebook.ensure_stack(tmp_path, [])
    assert len(calls) == 1


def test_a_python_without_the_stack_and_without_a_venv_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(run_notebook, "STACK_MODULES", (MISSING,))
    monkeypatch.setenv(run_notebook.REEXEC_ENV, "")
    with pytest.raises(SystemExit) as stop:
        run_notebook.ensure_stack(tmp_path, [])
    message = str(stop.value.code)
    assert message.startswith("error: ") and "\n" not in message and f"cannot import '{MISSING}'" in message
    assert "lacks it too" not in message and "`source .venv/bin/activate` (or `make shell`)" in message
    monkeypatch.setattr(run_notebook, "STACK_MODULES", ("yaml", "nbformat"))
    run_notebook.ensure_stack(tmp_path, [])  # the stack is there: nothing happens


def test_the_stage_command_on_a_bare_python(tmp_path):
    """End to end with real interpreters: a bare venv (no packages) running the stage command in a
    project copy stops with the one line, and with a .venv beside it that has the stack, runs there."""
    repo = tmp_path / "repo"
    for folder in ("tools", "gadlib"):  # a project holds both; `-m` runs from its top folder
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)
    command = [str(bare / "bin" / "python"), "-m", "tools.run_notebook", "--help"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", run_notebook.REEXEC_ENV)}
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "cannot import 'yaml'" in result.stderr and "source .venv/bin/activate" in result.stderr

    # a .venv that sees this interpreter's packages (a .pth file), as `make setup` would have made it
    venv.create(repo / ".venv", with_pip=False)
    site = next((repo / ".venv" / "lib").glob("python*/site-packages"))
    (site / "stack.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and "[-p NAME VALUE] notebook output" in result.stdout  # the runner's own
