"""Where this project's files are: the project folder holds params.yaml and dvc.yaml.

The folder is found from the working directory (a notebook opened in JupyterLab runs in
``notebooks/``, a DVC stage in the top folder), or from ``$DVC_ROOT``, which DVC sets for every stage
command, never from where gadlib is installed: an installed gadlib works on any clone.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_MARKERS = ("params.yaml", "dvc.yaml")


class ProjectNotFoundError(FileNotFoundError):
    """Neither the working directory nor a folder above it holds params.yaml and dvc.yaml."""


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The project folder: ``$DVC_ROOT``, else the first of ``start`` (default: the working directory)
    and its parents that holds params.yaml and dvc.yaml.

    Raises
    ------
    ProjectNotFoundError naming the folder searched from and what to do.
    """
    if start is None and os.environ.get("DVC_ROOT"):
        start = os.environ["DVC_ROOT"]
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if all((folder / marker).is_file() for marker in PROJECT_MARKERS):
            return folder
    raise ProjectNotFoundError(
        f"no GAD project here: neither {here} nor a folder above it holds {' and '.join(PROJECT_MARKERS)}; "
        f"run this inside a clone of the project (its top folder or notebooks/)"
    )


def reports_dir(root: Path | None = None) -> Path:
    """``reports/``: what a reader reads (metrics, report, figures, executed notebooks)."""
    return (root or project_root()) / "reports"


class ExperimentPaths:
    """Where one experiment's stages write: large artefacts under artifacts/, tables under reports/."""

    def __init__(self, experiment: str, root: str | os.PathLike | None = None):
        root = Path(root) if root is not None else project_root()
        self.experiment = experiment
        self.artifacts = root / "artifacts" / experiment
        self.reports = root / "reports" / "experiments" / experiment
        self.notebooks = root / "reports" / "notebooks" / experiment
        self.prepared = self.artifacts / "prepared.npz"
        self.classifier = self.artifacts / "classifier.pt"
        self.support_dir = self.artifacts / "support"
        self.attributions_dir = self.artifacts / "attributions"
        self.classifier_summary = self.reports / "classifier.json"
        self.fidelity = self.reports / "fidelity.csv"
        self.attribution_cost = self.reports / "attribution_cost.csv"
        self.hull_metrics = self.reports / "hull_metrics.csv"
        self.standard_metrics = self.reports / "standard_metrics.csv"
        self.summary = self.reports / "summary.json"

    def attributions(self, method: str) -> Path:
        return self.attributions_dir / f"{method}.npz"
