"""The whole pipeline, end to end, on the tiny profile in a temporary copy of the repository.

Runs `dvc repro` exactly as the README's main command does (every stage notebook, executed by
papermill), then checks that every declared output exists and parses, that each executed notebook
shows its step (tables, figures, no error, no warning for an expected condition), that a second
`dvc repro` does nothing, and that the paper profile runs on tiny generated Dogs vs. Cats and CUB-200
trees. Minutes, not seconds: marked `pipeline`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from gadlib.evaluation.table import CONTROL_SET, REGION_SETS
from gadlib.project.params import read_yaml
from tests.fixtures import copy_repository, write_cub_tree, write_dogs_vs_cats_tree
from tests.fixtures import run_command as run

pytestmark = pytest.mark.pipeline

METHOD_KEYS = {
    "rc_mean",
    "rc_median",
    "rc_below_1",
    "rs_gad_mean",
    "rs_rest_mean",
    "rs_random_mean",
    "rs_gad_beats_rest",
    "n_images",
}


def check_outputs(repo: Path, experiments: list[str], methods: list[str]) -> dict:
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert set(metrics) == set(experiments)
    for name in experiments:
        exp = metrics[name]
        assert 0.0 <= exp["accuracy"] <= 1.0
        assert exp["support"] and {"alpha", "accuracy", "agreement", "margin"} <= set(exp["support"][0])
        assert set(exp["methods"]) == set(methods)
        for values in exp["methods"].values():
            assert METHOD_KEYS <= set(values)
            assert values["n_images"] >= 1
        table = pd.read_csv(repo / "reports" / "experiments" / name / "hull_metrics.csv")
        assert set(table["region_set"]) == {*REGION_SETS, CONTROL_SET}  # the tiny profile has the alpha = 0 control
        assert {"tests", "rs_by_fill", "agreement"} <= set(exp["methods"][methods[0]])
        assert set(exp["controls"]["alpha0"]["methods"]) == set(methods)
        assert set(methods) <= set(exp["quantus"]) and "direction" in exp["quantus"]  # the standard metrics
        assert set(table["method"]) == set(methods)
        pd.read_csv(repo / "reports" / "experiments" / name / "fidelity.csv")
        for nb in STAGE_NOTEBOOKS:
            check_executed(repo / "reports" / "notebooks" / name / f"{nb}.ipynb")
        assert (repo / "reports" / "figures" / f"attribution_grid_{name}.png").stat().st_size > 1000
    for fig in ("rc_distributions", "rs_comparison", "support_fidelity"):
        assert (repo / "reports" / "figures" / f"{fig}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figures_notebook = check_executed(repo / "reports" / "notebooks" / "06_figures.ipynb")
    report = (repo / "reports" / "report.md").read_text()
    assert "RC" in report and all(name in report for name in experiments)
    linked = [line for line in report.splitlines() if line.startswith("![")]
    assert len(linked) == len(list((repo / "reports" / "figures").glob("*.png"))) == figures_notebook["figures"]
    run(["python", "-m", "tools.timings"], repo)  # what `make repro` runs after `dvc repro`
    timings = json.loads((repo / "reports" / "timings.json").read_text())
    assert all(timings["stages"]["train_support"][name] > 0 for name in experiments) and timings["figures"] > 0
    assert timings["total_seconds"] > sum(timings["stages"]["train_support"].values())
    return metrics


STAGE_NOTEBOOKS = ("01_prepare", "02_train_classifier", "03_train_support", "04_attribute", "05_hull_metrics")


def check_executed(path: Path) -> dict:
    """An executed stage notebook tells its step: narration, shown results, no error, and no warning
    for an expected condition (Captum's GuidedBackprop notice, an empty GAD map). Returns counts."""
    notebook = json.loads(path.read_text())
    cells = notebook["cells"]
    outputs = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"], path
    shown = [o for o in outputs if o["output_type"] in ("display_data", "execute_result")]
    assert sum(c["cell_type"] == "markdown" for c in cells) >= 3 and shown, f"{path.name} shows nothing"
    stderr = "".join("".join(o["text"]) for o in outputs if o.get("name") == "stderr")
    assert "Setting backward hooks" not in stderr and "empty" not in stderr, f"{path.name}: {stderr[:500]}"
    assert notebook["metadata"]["gadlib"]["stage_seconds"] > 0
    return {"figures": sum("image/png" in o.get("data", {}) for o in shown)}


def test_tiny_profile_end_to_end(tiny_pipeline):
    # tiny_pipeline (tests/conftest.py) ran `dvc repro` on profiles/tiny.yaml, once for the session.
    repo, params = tiny_pipeline.repo, tiny_pipeline.params
    check_outputs(repo, list(params["experiments"]), params["attribution"]["methods"])
    name = next(iter(params["experiments"]))
    hull = json.loads((repo / "reports" / "notebooks" / name / "05_hull_metrics.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for c in hull["cells"] for o in c.get("outputs", []))
    assert "Saliency: GAD map empty on" in printed  # the expected conditions, as one line of information
    again = run(["dvc", "repro"], repo)
    assert "Running stage" not in again.stdout, "a second dvc repro must not re-run any stage"
    status = run(["dvc", "status", "--json"], repo)
    assert json.loads(status.stdout or "{}") == {}


def test_paper_profile_on_generated_trees(tmp_path):
    repo = copy_repository(tmp_path / "repo")
    write_dogs_vs_cats_tree(repo / "data" / "dogs-vs-cats", per_class=12, size=40)
    write_cub_tree(repo / "data" / "CUB_200_2011", class_ids=(113, 114, 158, 159), per_class=6, size=40)
    params = read_yaml((repo / "profiles" / "paper.yaml").read_text())
    # The paper's sizes are a GPU job; the same profile, shrunk, on the generated trees.
    keep = ["dogs_vs_cats_resnet18", "cub_sparrows_vs_warblers_vgg16"]
    params["experiments"] = {k: dict(params["experiments"][k], image_size=32) for k in keep}
    params["data"].update(max_train_per_class=None, max_test_per_class=None, val_fraction=0.2)
    params["classifier"].update(epochs=1, batch_size=8)
    params["support"].update(alphas=[0.5, 1.0], epochs=1, batch_size=8)
    params["attribution"].update(methods=["IntegratedGradients", "Saliency"], n_images=2, n_steps=4)
    params["figures"]["n_examples"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro"], repo)
    check_outputs(repo, keep, params["attribution"]["methods"])
