"""DVC experiments at a glance: ``dvc exp show`` cut to its headline numbers, in 80 columns.

``python -m tools.compare [--method NAME] [-- DVC EXP SHOW OPTIONS]`` (``make compare``) runs
``dvc exp show --csv`` and prints, for each DVC run (the workspace, commits, ``dvc exp run``
experiments), the parameters that differ between the runs and one line per pipeline experiment: the
classifier's accuracy and, for one attribution method, GAD's median RC, how often its map is empty,
how often RS(GAD) > RS(rest), and the verdict of that claim. ``dvc exp show`` has every column
(hundreds); ``reports/metrics.json`` every number.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from gadlib.project.params import read_yaml

ROOT = Path(__file__).resolve().parents[1]  # the project folder: tools/ lives in it
PARAMS_FILE = ROOT / "params.yaml"

WIDTH = 80
# columns of `dvc exp show --csv` that describe the run rather than its params or metrics
RUN_COLUMNS = ("Experiment", "rev", "typ", "Created", "parent", "State", "Executor")
# the claim's verdicts (gadlib.evaluation.statistics.VERDICTS), short enough for the table
SHORT_VERDICTS = {
    "supported": "supported",
    "not significant": "n.s.",
    "contradicted": "contradicted",
    "degenerate": "degenerate",
    "by construction": "by constr.",
}
TEXT_COLUMNS = ("experiment", "RS verdict")  # left-aligned; the numbers are right-aligned
# (heading, metric under <experiment>.methods.<method>., format)
METHOD_COLUMNS = (
    ("RC med", "rc_median", "{:.3g}"),
    ("empty", "gad_empty", "{:.0%}"),
    ("RS>rest", "rs_gad_beats_rest", "{:.0%}"),
    ("RS verdict", "tests.rs_gad_vs_rest.verdict", "{}"),
)


def exp_show_csv(args: Sequence[str] = (), dvc: str = "dvc") -> pd.DataFrame:
    """``dvc exp show --csv [args]`` as a table of strings (one row per run, every column).

    Raises
    ------
    RuntimeError naming the command and DVC's message when it fails.
    """
    cmd = [dvc, "exp", "show", "--csv", *args]
    try:
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise RuntimeError(f"cannot run {dvc!r} ({exc}); run `source .venv/bin/activate` or `make shell`") from None
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {' '.join(result.stderr.split())}")
    return pd.read_csv(io.StringIO(result.stdout), dtype=str, keep_default_na=False)


def param_keys(params: dict, prefix: str = "") -> set[str]:
    """Dotted keys of a params mapping, as ``dvc exp show`` names its columns (lists are values)."""
    keys = set()
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        keys |= param_keys(value, f"{dotted}.") if isinstance(value, dict) else {dotted}
    return keys


def run_names(shown: pd.DataFrame) -> list[str]:
    """A name per row: the experiment's name, else its revision (workspace, branch, commit)."""
    names = shown["Experiment"] if "Experiment" in shown else pd.Series([""] * len(shown))
    return [name or rev for name, rev in zip(names, shown["rev"], strict=True)]


def pipeline_experiments(shown: pd.DataFrame) -> list[str]:
    """The pipeline experiments that have metrics (columns ``<experiment>.accuracy``), in column order."""
    return [column.removesuffix(".accuracy") for column in shown.columns if column.endswith(".accuracy")]


def changed_params(shown: pd.DataFrame, keys: set[str]) -> pd.DataFrame:
    """The params columns whose value differs between the rows (``dvc exp show --only-changed``)."""
    columns = [c for c in shown.columns if c in keys and c not in RUN_COLUMNS]
    return shown[[c for c in columns if shown[c].nunique(dropna=False) > 1]]


def reference_row(shown: pd.DataFrame) -> int:
    """The row other runs are compared with: the first commit (baseline) after the workspace, else row 0."""
    baselines = [i for i, (typ, rev) in enumerate(zip(shown["typ"], shown["rev"], strict=True)) if typ == "baseline"]
    return next((i for i in baselines if shown["rev"].iloc[i] != "workspace"), 0)


def settings(shown: pd.DataFrame, keys: set[str]) -> list[str]:
    """Per row, the params that differ from :func:`reference_row`'s, as ``key=value, ...``."""
    changed, reference = changed_params(shown, keys), reference_row(shown)
    names = run_names(shown)
    out = []
    for index in range(len(shown)):
        differ = [
            f"{k}={changed[k].iloc[index]}"
            for k in changed.columns
            if changed[k].iloc[index] != changed[k].iloc[reference]
        ]
        if index == reference:
            out.append("the reference for the others")
        else:
            out.append(", ".join(differ) or f"params as in {names[reference]}")
    return out


def headline_table(shown: pd.DataFrame, method: str) -> pd.DataFrame:
    """One row per run and pipeline experiment with the headline numbers of ``method``.

    Parameters
    ----------
    shown : ``dvc exp show --csv`` read as strings (:func:`exp_show_csv`)
    method : the attribution method whose GAD numbers are shown, e.g. "IntegratedGradients"

    Returns
    -------
    DataFrame with columns run, experiment, acc and the headings of :data:`METHOD_COLUMNS`, all
    formatted text ("-" where a run has no such number).
    """
    rows = []
    for index, run in enumerate(run_names(shown)):
        for experiment in pipeline_experiments(shown):
            row = {
                "run": run,
                "experiment": experiment,
                "acc": _format(shown, index, f"{experiment}.accuracy", "{:.3f}"),
            }
            for heading, metric, fmt in METHOD_COLUMNS:
                row[heading] = _format(shown, index, f"{experiment}.methods.{method}.{metric}", fmt)
            rows.append(row)
    return pd.DataFrame(rows, columns=["run", "experiment", "acc", *(h for h, _, _ in METHOD_COLUMNS)])


def render(shown: pd.DataFrame, method: str, keys: set[str], width: int = WIDTH) -> str:
    """The headline table as text no wider than ``width``: per run a line with its changed params,
    then one indented line per pipeline experiment."""
    table = headline_table(shown, method)
    described, per_run = settings(shown, keys), len(pipeline_experiments(shown))
    body = table.drop(columns="run")
    body["RS verdict"] = body["RS verdict"].map(lambda v: SHORT_VERDICTS.get(v, v))
    widths = {c: max(len(c), *(len(v) for v in body[c])) if len(body) else len(c) for c in body.columns}
    widths["experiment"] = min(widths["experiment"], 22)

    def line(values: dict) -> str:
        cells = [
            f"{str(values[c])[: widths[c]]:<{widths[c]}}" if c in TEXT_COLUMNS else f"{values[c]:>{widths[c]}}"
            for c in body.columns
        ]
        return ("  " + "  ".join(cells))[:width]

    out = [f"GAD over {method} (--method to change); every column: dvc exp show", line({c: c for c in body.columns})]
    for index, run in enumerate(run_names(shown)):
        out += textwrap.wrap(
            f"{run}: {described[index]}",
            width,
            subsequent_indent="    ",
            max_lines=3,
            placeholder=" ...",
            break_on_hyphens=False,
        )
        out += [line(row) for _, row in body.iloc[index * per_run : (index + 1) * per_run].iterrows()]
    return "\n".join(out)


def _format(shown: pd.DataFrame, index: int, column: str, fmt: str) -> str:
    text = shown[column].iloc[index] if column in shown else ""
    if text in ("", "-"):
        return "-"
    try:
        return fmt.format(float(text)) if fmt != "{}" else text
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", help="attribution method to show (default: the first in params.yaml)")
    parser.add_argument("dvc_args", nargs="*", help="passed to `dvc exp show` (after --), e.g. -A or --rev HEAD~1")
    args = parser.parse_args(argv)
    params = read_yaml(PARAMS_FILE.read_text())
    method = args.method or params["attribution"]["methods"][0]
    try:
        shown = exp_show_csv(args.dvc_args)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not pipeline_experiments(shown):
        print("no run has metrics yet: run `dvc repro` or `dvc exp run` first", file=sys.stderr)
        return 1
    print(render(shown, method, param_keys(params)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
