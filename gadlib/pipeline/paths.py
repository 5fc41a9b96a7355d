"""Project paths, anchored on the package rather than on the working directory."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARAMS_FILE = ROOT / "params.yaml"
DATA_DIR = ROOT / "data"
ARTIFACTS_DIR = ROOT / "artifacts"
REPORTS_DIR = ROOT / "reports"
FIGURES_DIR = REPORTS_DIR / "figures"
PLOT_DATA_DIR = REPORTS_DIR / "plots"  # the per-image tables dvc.yaml's plots draw (dvc plots show / diff)
METRICS_FILE = REPORTS_DIR / "metrics.json"
REPORT_FILE = REPORTS_DIR / "report.md"
TIMINGS_FILE = REPORTS_DIR / "timings.json"


class ExperimentPaths:
    """Where one experiment's stages write: large artefacts under artifacts/, tables under reports/."""

    def __init__(self, experiment: str, artifacts: Path | None = None, reports: Path | None = None):
        # the module's folders are read at call time, so a test can point them elsewhere
        self.experiment = experiment
        self.artifacts = Path(artifacts or ARTIFACTS_DIR) / experiment
        self.reports = Path(reports or REPORTS_DIR) / "experiments" / experiment

    @property
    def prepared(self) -> Path:
        return self.artifacts / "prepared.npz"

    @property
    def classifier(self) -> Path:
        return self.artifacts / "classifier.pt"

    @property
    def classifier_summary(self) -> Path:
        return self.reports / "classifier.json"

    @property
    def support_dir(self) -> Path:
        return self.artifacts / "support"

    @property
    def fidelity(self) -> Path:
        return self.reports / "fidelity.csv"

    @property
    def attributions_dir(self) -> Path:
        return self.artifacts / "attributions"

    def attributions(self, method: str) -> Path:
        return self.attributions_dir / f"{method}.npz"

    @property
    def attribution_cost(self) -> Path:
        return self.reports / "attribution_cost.csv"

    @property
    def hull_metrics(self) -> Path:
        return self.reports / "hull_metrics.csv"

    @property
    def standard_metrics(self) -> Path:
        return self.reports / "standard_metrics.csv"

    @property
    def summary(self) -> Path:
        return self.reports / "summary.json"
