"""Where the pipeline's time went: ``python -m tools.timings`` writes ``reports/timings.json``.

Each stage's wall time (interpreter and kernel start included) is in its executed notebook's
metadata (``gadlib.stage_seconds``, written by :mod:`tools.run_notebook`; else papermill's own
duration). ``make repro`` runs this after ``dvc repro``: timings are a record of one machine's run,
not an input of any stage, so no stage depends on them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gadlib.common.atomic import write_json
from gadlib.project.params import load_params

ROOT = Path(__file__).resolve().parents[1]  # the project folder: tools/ lives in it
# the stages, in pipeline order, and the notebooks they execute (figures: once for all experiments)
EXPERIMENT_STAGES = {
    "prepare": "01_prepare",
    "train_classifier": "02_train_classifier",
    "train_support": "03_train_support",
    "attribute": "04_attribute",
    "hull_metrics": "05_hull_metrics",
}
FIGURES_NOTEBOOK = Path("notebooks") / "06_figures.ipynb"


def notebook_seconds(path: str | Path) -> float | None:
    """Wall time of the stage that executed the notebook at ``path``: its ``gadlib.stage_seconds``, else
    papermill's execution time; None when the notebook or both records are missing."""
    path = Path(path)
    if not path.is_file():
        return None
    metadata = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    seconds = metadata.get("gadlib", {}).get("stage_seconds", metadata.get("papermill", {}).get("duration"))
    return None if seconds is None else float(seconds)


def collect_timings(experiments: list[str], reports: str | Path) -> dict:
    """Seconds per stage and experiment, the figures stage, and their sum.

    Returns
    -------
    dict with ``stages`` (stage -> experiment -> seconds, None where a notebook is missing),
    ``figures`` (seconds or None) and ``total_seconds`` (the sum of every known number).
    """
    notebooks = Path(reports) / "notebooks"
    stages = {
        stage: {name: notebook_seconds(notebooks / name / f"{notebook}.ipynb") for name in experiments}
        for stage, notebook in EXPERIMENT_STAGES.items()
    }
    figures = notebook_seconds(Path(reports) / FIGURES_NOTEBOOK)
    known = [s for by_experiment in stages.values() for s in by_experiment.values() if s is not None]
    return {"stages": stages, "figures": figures, "total_seconds": round(sum(known) + (figures or 0.0), 2)}


def main() -> int:
    reports = ROOT / "reports"
    timings = collect_timings(load_params(ROOT / "params.yaml").experiment_names, reports)
    write_json(reports / "timings.json", timings)
    print(f"reports/timings.json: {timings['total_seconds'] / 60:.1f} min of stage wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
