"""Run one notebook as a pipeline stage: validate params.yaml, check the parameters, execute it.

``python -m gadlib.pipeline.stage NOTEBOOK OUTPUT [-p NAME VALUE ...]`` is what every ``dvc.yaml`` command
calls. The parameter file is validated before the kernel starts; a parameter the notebook does not
declare in its ``parameters`` cell is an error (papermill would only warn); the executed copy is
written atomically, so an interrupted stage never leaves a finished-looking notebook behind. A
failed run keeps its partial copy beside the output as ``*.failed.ipynb`` for reading the traceback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

from gadlib.common.atomic import atomic_path
from gadlib.common.progress import PROGRESS_ENV
from gadlib.pipeline.params import ConfigError, Params, load_params
from gadlib.pipeline.paths import PARAMS_FILE, ROOT

STARTED = time.time()  # this module is the stage command's entry point: its import is the stage's start
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
    os.environ.setdefault(STAGE_STARTED_ENV, str(STARTED))  # the figures stage reads its own time so far
    # The saved notebook cannot redraw widgets: its kernel (which inherits this environment) uses text bars.
    os.environ.setdefault(PROGRESS_ENV, "text")
    with atomic_path(output) as tmp, warnings.catch_warnings():
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
        nbformat.write(executed, str(tmp))
    failed.unlink(missing_ok=True)


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
