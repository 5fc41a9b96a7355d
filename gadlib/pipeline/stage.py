"""Run one notebook as a pipeline stage: validate params.yaml, check the parameters, execute it.

``python -m gadlib.pipeline.stage NOTEBOOK OUTPUT [-p NAME VALUE ...]`` is what every ``dvc.yaml`` command
calls. The parameter file is validated before the kernel starts; a parameter the notebook does not
declare in its ``parameters`` cell is an error (papermill would only warn); the executed copy is
written atomically, so an interrupted stage never leaves a finished-looking notebook behind. A
failed run keeps its partial copy beside the output as ``*.failed.ipynb`` for reading the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

STARTED = time.time()  # this module is the stage command's entry point: its import is the stage's start

# What the stage command and its kernel import; checked (without importing) before anything heavy.
STACK_MODULES = ("yaml", "pydantic", "tqdm", "nbformat", "papermill", "ipykernel", "torch", "captum")
REEXEC_ENV = "GADLIB_STAGE_REEXEC"  # set on re-execution, so a broken .venv fails instead of looping


def missing_stack_module(modules: tuple[str, ...] = STACK_MODULES) -> str | None:
    """The first of ``modules`` this interpreter cannot import (found without importing it), else None."""
    return next((name for name in modules if importlib.util.find_spec(name) is None), None)


def ensure_stack(root: Path, argv: list[str], module: str = "gadlib.pipeline.stage") -> None:
    """Make sure the stage runs on an interpreter that has the project's stack.

    ``dvc repro`` runs ``python -m gadlib.pipeline.stage``, and ``python`` is whatever comes first on
    PATH: without ``source .venv/bin/activate`` that is the system's, which lacks the stack. Then the
    same command is re-executed with the repository's ``.venv/bin/python`` when it exists (and is not
    the running interpreter); otherwise the process stops with one line naming the missing module.

    Parameters
    ----------
    root : the repository root, where ``.venv/`` is
    argv : the command's arguments after the module name (``sys.argv[1:]``)
    module : the module to run again with ``-m``
    """
    missing = missing_stack_module()
    if missing is None:
        return
    venv = root / ".venv"
    venv_python = venv / "bin" / "python"
    in_venv = Path(sys.prefix).resolve() == venv.resolve()
    if venv_python.is_file() and not in_venv and not os.environ.get(REEXEC_ENV):
        os.environ[REEXEC_ENV] = "1"
        os.execv(str(venv_python), [str(venv_python), "-m", module, *argv])
    tried = f" ({venv_python} lacks it too)" if os.environ.get(REEXEC_ENV) or in_venv else ""
    sys.exit(
        f"error: {sys.executable} cannot import {missing!r}, which the pipeline needs{tried}; run "
        f"`source .venv/bin/activate` (or `make shell`) before dvc, or `make setup` to create .venv"
    )


if __name__ == "__main__":  # before the imports below, which need the stack
    from gadlib.pipeline.paths import ROOT as _ROOT

    ensure_stack(_ROOT, sys.argv[1:])

from gadlib.common.atomic import atomic_path  # noqa: E402
from gadlib.common.progress import PROGRESS_ENV  # noqa: E402
from gadlib.pipeline.params import ConfigError, Params, load_params  # noqa: E402
from gadlib.pipeline.paths import PARAMS_FILE, ROOT  # noqa: E402

STAGE_STARTED_ENV = "GADLIB_STAGE_STARTED"


class StageError(ValueError):
    """A stage was called with a parameter its notebook does not declare, or an unknown experiment."""


def declared_parameters(notebook: str | Path) -> dict:
    """Names and defaults of the notebook's ``parameters`` cell, as papermill reads them."""
    import papermill

    if not Path(notebook).is_file():
        raise FileNotFoundError(f"notebook {notebook} does not exist; stages run the notebooks in notebooks/")
    return papermill.inspect_notebook(str(notebook))


def check_parameters(notebook: str | Path, parameters: dict, params: Params) -> None:
    """Raise :class:`StageError` for a parameter the notebook does not declare or an unknown experiment."""
    experiment = parameters.get("experiment")  # checked first: it needs no notebook reader
    if experiment is not None and experiment not in params.experiments:
        raise StageError(f"unknown experiment {experiment!r}; params.yaml defines {params.experiment_names}")
    declared = declared_parameters(notebook)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise StageError(
            f"{notebook} does not declare parameter(s) {unknown}; it declares "
            f"{sorted(declared)} in its 'parameters' cell"
        )


# The figures of the saved notebook: the inline backend, whatever the caller's MPLBACKEND says (make
# exports Agg, for its tests, which would leave the executed notebooks without a single figure).
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


@contextlib.contextmanager
def kernel_environment() -> Iterator[None]:
    """The environment the notebook's kernel inherits, set for the duration of the ``with`` block.

    - ``GADLIB_STAGE_STARTED``: this command's start, so the figures stage can count its own time;
    - ``GADLIB_PROGRESS=log`` unless set: a saved notebook cannot redraw widgets, and every refresh of
      a text bar would be an output of its own, so each bar writes a few whole lines instead;
    - ``MPLBACKEND``: :data:`INLINE_BACKEND`, so figures are saved in the executed notebook.
    """
    changes = {
        STAGE_STARTED_ENV: os.environ.get(STAGE_STARTED_ENV, str(STARTED)),
        PROGRESS_ENV: os.environ.get(PROGRESS_ENV, "log"),
        "MPLBACKEND": INLINE_BACKEND,
    }
    before = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_stage(notebook: str | Path, output: str | Path, parameters: dict, params_file: str | Path) -> None:
    """Validate, then execute ``notebook`` with papermill into ``output`` (atomically).

    Parameters
    ----------
    notebook : the notebook to run; it must declare every name of ``parameters`` in its parameters cell
    output : where the executed copy goes; a failed run leaves ``<output stem>.failed.ipynb`` instead
    parameters : injected by papermill, e.g. ``{"experiment": "tshirt_vs_shirt"}``
    params_file : the params.yaml validated before the kernel starts
    """
    params = load_params(params_file)
    check_parameters(notebook, parameters, params)
    import nbformat
    import papermill  # after the checks, so a bad params.yaml is reported without loading it

    output = Path(output)
    failed = output.with_suffix(".failed.ipynb")
    with kernel_environment(), atomic_path(output) as tmp, warnings.catch_warnings():
        # The temporary name does not end in .ipynb; papermill would warn at every cell.
        warnings.filterwarnings("ignore", message="The specified file .* does not end in")
        try:
            executed = papermill.execute_notebook(
                str(notebook),
                str(tmp),
                parameters=parameters,
                cwd=str(ROOT),
                kernel_name="python3",
                progress_bar=False,
                log_output=True,
            )
        except BaseException:
            if tmp.stat().st_size > 0:  # papermill got as far as writing the partial notebook
                shutil.copyfile(tmp, failed)
            raise
        # the stage's wall time, kernel start and imports included: what reports/timings.json adds up
        executed.metadata["gadlib"] = {"stage_seconds": round(time.time() - STARTED, 2)}
        tidy_executed(executed, output)
        nbformat.write(executed, str(tmp))
    failed.unlink(missing_ok=True)


# the text a carriage return sends back over: everything of a line up to its last \r
_OVERWRITTEN = re.compile(r"[^\n]*\r(?=[^\n])")
# per-cell records that change at every run (timestamps, durations), dropped from the saved copy
_VOLATILE_CELL_METADATA = ("start_time", "end_time", "duration")


def tidy_executed(notebook, output: str | Path) -> None:
    """Make an executed notebook read like a log and differ between two runs only where results do.

    In place: consecutive outputs of the same stream become one (a kernel sends each write as its
    own message), text that a carriage return overwrote is dropped (what a terminal would show),
    the per-cell timestamps and durations are removed (the notebook's metadata keeps papermill's
    total duration and ``gadlib.stage_seconds``), the injected parameters cell gets a fixed id
    instead of a random one, and papermill's ``output_path`` names ``output`` rather than the
    temporary file the stage wrote.

    Parameters
    ----------
    notebook : an nbformat v4 notebook, as papermill returns it
    output : the path the notebook is saved under
    """
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        for key in _VOLATILE_CELL_METADATA:
            cell.metadata.get("papermill", {}).pop(key, None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell["id"] = "injected-parameters"
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            previous = outputs[-1] if outputs else None
            same_stream = previous is not None and out.output_type == previous.output_type == "stream"
            if same_stream and previous.name == out.name:
                previous.text += out.text
            else:
                outputs.append(out)
        for out in outputs:
            if out.output_type == "stream":
                out.text = _OVERWRITTEN.sub("", out.text)
        cell.outputs = [o for o in outputs if o.output_type != "stream" or o.text]
    papermill_record = notebook.metadata.get("papermill", {})
    if "output_path" in papermill_record:
        output = Path(output).resolve()
        papermill_record["output_path"] = str(output.relative_to(ROOT) if output.is_relative_to(ROOT) else output)


def _parse_value(text: str):
    """Parameters arrive as text; read numbers, booleans and null as YAML would."""
    import yaml

    return yaml.safe_load(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("output")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args(argv)
    parameters = {name: _parse_value(value) for name, value in args.parameter}
    try:
        run_stage(args.notebook, args.output, parameters, PARAMS_FILE)
    except (ConfigError, StageError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Imported only here: a bad params.yaml is reported without loading papermill (a second).
        from papermill.exceptions import PapermillExecutionError  # the optional pipeline extra

        if not isinstance(exc, PapermillExecutionError):
            raise
        failed = Path(args.output).with_suffix(".failed.ipynb")
        print(
            f"error: {args.notebook} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
            f"The executed part, with the traceback, is in {failed}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
