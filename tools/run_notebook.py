"""Run one stage notebook with papermill: ``python -m tools.run_notebook NOTEBOOK OUTPUT -p NAME VALUE ...``.

Every stage of dvc.yaml is a papermill run with papermill's arguments; this wrapper adds what plain
``papermill`` lacks for a pipeline stage, each for a reason seen on this project:

1. ``dvc`` typed without ``source .venv/bin/activate`` runs the system's ``python``, which has neither
   papermill nor torch: the command re-runs itself with the project's ``.venv/bin/python``, or stops
   with one line saying to activate it.
2. A failing cell ends papermill with two tracebacks (dozens of lines); here it is one line (for a bad
   params.yaml: the key, the value and what is allowed), and the executed part, with its traceback,
   is OUTPUT. A parameter the notebook does not declare is an error (papermill only warns).
3. The executed copy is tidied (:func:`tidy_executed`): papermill stores per-cell timestamps and a
   random cell id, so every rerun with unchanged inputs rewrote hundreds of lines of the committed
   executed notebooks; tidied, a rerun changes what changed and the recorded stage time only.

It also validates params.yaml before the kernel starts (each notebook does so again in its first
cell, for runs in JupyterLab), sets ``GADLIB_PROGRESS=log`` for the kernel (unless set), so progress
bars print a few whole lines into the executed notebook, and records the stage's wall time in the
notebook's metadata (``gadlib.stage_seconds``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import time
from pathlib import Path

STARTED = time.time()
STACK_MODULES = ("yaml", "pydantic", "nbformat", "papermill", "ipykernel", "torch", "captum")
REEXEC_ENV = "GADLIB_STAGE_REEXEC"  # set on re-execution, so a broken .venv fails instead of looping


def ensure_stack(root: Path, argv: list[str]) -> None:
    """Re-run this command with ``root/.venv/bin/python`` when the running python lacks the stack."""
    missing = next((name for name in STACK_MODULES if importlib.util.find_spec(name) is None), None)
    if missing is None:
        return
    venv_python = root / ".venv" / "bin" / "python"
    in_venv = Path(sys.prefix).resolve() == (root / ".venv").resolve()
    if venv_python.is_file() and not in_venv and not os.environ.get(REEXEC_ENV):
        os.environ[REEXEC_ENV] = "1"
        os.execv(str(venv_python), [str(venv_python), "-m", "tools.run_notebook", *argv])
    tried = f" ({venv_python} lacks it too)" if os.environ.get(REEXEC_ENV) or in_venv else ""
    sys.exit(
        f"error: {sys.executable} cannot import {missing!r}, which the pipeline needs{tried}; run "
        f"`source .venv/bin/activate` (or `make shell`) before dvc, or `make setup` to create .venv"
    )


# the text a carriage return sends back over: everything of a line up to its last \r
_OVERWRITTEN = re.compile(r"[^\n]*\r(?=[^\n])")
_VOLATILE_CELL_METADATA = ("start_time", "end_time", "duration")


def tidy_executed(notebook, output: Path, root: Path) -> None:
    """Make an executed notebook read like a log and differ between two runs only where results do.

    In place: consecutive outputs of one stream become one, text a carriage return overwrote is
    dropped (what a terminal shows), per-cell timestamps are removed (papermill's total duration
    stays), the injected parameters cell gets a fixed id, and ``output_path`` is relative to ``root``.
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
    record = notebook.metadata.get("papermill", {})
    if "output_path" in record:
        resolved = output.resolve()
        record["output_path"] = str(resolved.relative_to(root) if resolved.is_relative_to(root) else output)


def run(notebook: Path, output: Path, parameters: dict, root: Path) -> None:
    """Execute ``notebook`` into ``output`` with papermill, then tidy ``output`` (see the module's doc)."""
    import nbformat
    import papermill

    from gadlib.common.atomic import atomic_path

    if not Path(notebook).is_file():
        raise FileNotFoundError(f"notebook {notebook} does not exist; the stages run the notebooks in notebooks/")
    declared = papermill.inspect_notebook(str(notebook))
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ValueError(f"{notebook} does not declare parameter(s) {unknown}; it declares {sorted(declared)}")
    output.parent.mkdir(parents=True, exist_ok=True)
    progress = os.environ.get("GADLIB_PROGRESS")
    os.environ["GADLIB_PROGRESS"] = progress or "log"  # the kernel inherits it
    try:
        executed = papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            kernel_name="python3",
            progress_bar=False,
            log_output=True,
            # the kernel's own log (unencrypted TCP, interrupts) is not the stage's business
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
        )
    finally:
        if progress is None:
            os.environ.pop("GADLIB_PROGRESS", None)
    executed.metadata["gadlib"] = {"stage_seconds": round(time.time() - STARTED, 2)}
    tidy_executed(executed, output, root)
    with atomic_path(output) as tmp:
        nbformat.write(executed, str(tmp))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path.cwd()
    ensure_stack(root, argv)
    import yaml
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    from gadlib.project.params import ConfigError, load_params

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args(argv)
    # values as YAML reads them (numbers, booleans, null), as papermill's own -p does
    parameters = {name: yaml.safe_load(value) for name, value in args.parameter}
    try:
        if (root / "params.yaml").is_file():  # every notebook validates it too; this fails before a kernel starts
            load_params(root / "params.yaml")
        run(args.notebook, args.output, parameters, root)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DeadKernelError as exc:
        print(
            f"error: the kernel running {args.notebook} died ({exc}); out of memory? {args.output} holds what ran",
            file=sys.stderr,
        )
        return 1
    except PapermillExecutionError as exc:
        print(
            f"error: {args.notebook} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
            f"The executed part, with the traceback, is in {args.output}",
            file=sys.stderr,
        )
        return 1
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
