"""Where the pipeline's time went, read from the executed notebooks (``reports/timings.json``).

The stage command (:mod:`gadlib.pipeline.stage`) writes each stage's wall time, interpreter and
kernel start included, into the executed notebook's metadata (``gadlib.stage_seconds``); the figures
stage, still running when it writes the file, counts its own time up to that moment.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from gadlib.pipeline.stage import STAGE_STARTED_ENV

# the per-experiment stages, in pipeline order, and the notebooks they execute
EXPERIMENT_STAGES = {
    "prepare": "01_prepare",
    "train_classifier": "02_train_classifier",
    "train_support": "03_train_support",
    "attribute": "04_attribute",
    "hull_metrics": "05_hull_metrics",
}


def notebook_seconds(path: str | Path) -> float | None:
    """Wall time of the stage that executed the notebook at ``path``: its ``gadlib.stage_seconds``, else
    papermill's execution time; None when the notebook or both records are missing."""
    path = Path(path)
    if not path.is_file():
        return None
    metadata = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    seconds = metadata.get("gadlib", {}).get("stage_seconds", metadata.get("papermill", {}).get("duration"))
    return None if seconds is None else float(seconds)


def collect_timings(experiments: list[str], notebooks_dir: str | Path) -> dict:
    """Seconds per stage and experiment, the figures stage so far, and their sum.

    Parameters
    ----------
    experiments : the experiments' names; notebooks_dir : where ``<experiment>/<notebook>.ipynb`` are.

    Returns
    -------
    dict with ``stages`` (stage -> experiment -> seconds, None where a notebook is missing),
    ``figures`` (this stage's seconds up to the call, None outside a stage command) and
    ``total_seconds`` (the sum of every known number).
    """
    stages = {
        stage: {name: notebook_seconds(Path(notebooks_dir) / name / f"{notebook}.ipynb") for name in experiments}
        for stage, notebook in EXPERIMENT_STAGES.items()
    }
    started = os.environ.get(STAGE_STARTED_ENV)
    figures = None if started is None else round(time.time() - float(started), 2)
    known = [s for by_experiment in stages.values() for s in by_experiment.values() if s is not None]
    return {"stages": stages, "figures": figures, "total_seconds": round(sum(known) + (figures or 0.0), 2)}
