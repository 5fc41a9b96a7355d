"""The explorer notebook (notebooks/explore.ipynb, not a stage): one experiment, method and image of
the saved outputs at a time. Its own functions on tiny saved outputs, and the whole notebook headless
after a tiny `dvc repro` (pipeline-marked)."""

from __future__ import annotations

import ast
import json

import matplotlib

matplotlib.use("Agg")

import nbformat  # noqa: E402
import pytest  # noqa: E402

from gadlib.project.params import validate_params  # noqa: E402
from tests.fixtures import ROOT, run_command  # noqa: E402
from tests.notebooks import notebook_function  # noqa: E402
from tests.pipeline.test_figures import INDEX, METHODS, write_stage_outputs  # noqa: E402

NOTEBOOK = "notebooks/explore.ipynb"

pytestmark = pytest.mark.usefixtures("close_figures")


@pytest.fixture
def tiny_params(params):
    """params.yaml with the methods of the saved outputs of test_figures and K = 2 support models."""
    params["attribution"]["methods"] = METHODS
    params["support"]["alphas"] = [0.5, 1.0]
    return validate_params(params)


@pytest.fixture
def figures_of(project_dir, tiny_params):
    """The notebook's figures_of, over saved outputs of the first experiment only (the second has not run)."""
    write_stage_outputs(tiny_params, tiny_params.experiment_names[:1])
    available = notebook_function(NOTEBOOK, "experiments_with_results")(tiny_params)
    explained = notebook_function(NOTEBOOK, "explained", params=tiny_params)
    return notebook_function(NOTEBOOK, "figures_of", params=tiny_params, available=available, explained=explained)


def test_only_experiments_with_saved_outputs_are_offered(project_dir, tiny_params):
    write_stage_outputs(tiny_params, tiny_params.experiment_names[:1])
    found = notebook_function(NOTEBOOK, "experiments_with_results")(tiny_params)
    assert found == {tiny_params.experiment_names[0]: METHODS}


def test_no_run_yet_says_to_run_the_pipeline(project_dir, tiny_params):
    with pytest.raises(RuntimeError, match="run `dvc repro` first"):
        notebook_function(NOTEBOOK, "experiments_with_results")(tiny_params)


def test_the_figures_of_one_image(figures_of, tiny_params):
    maps, masks, hulls, occlusion = figures_of(method="Saliency", image=int(INDEX[2]))
    n_models = len(tiny_params.support.alphas) + 1
    assert len(masks.axes) == n_models + 1  # each model's mask, then the consistency
    assert [ax.get_title().split(":")[0] for ax in masks.axes][-1] == "consistency"
    assert f"image {INDEX[2]}" in masks.get_suptitle()
    assert hulls.axes[0].get_title() == f"image {INDEX[2]}"
    assert len(occlusion.axes) >= 2 and maps.axes


def test_images_and_methods_are_checked(figures_of):
    with pytest.raises(ValueError, match=r"image 5 was not explained .* the explained images are \[11, 30, 38\]"):
        figures_of(method="Saliency", image=5)
    with pytest.raises(ValueError, match="SmoothGrad has no saved maps"):
        figures_of(method="SmoothGrad")
    with pytest.raises(ValueError, match="pullover_vs_coat, Saliency has no saved maps"):
        figures_of("pullover_vs_coat", "Saliency")


def test_the_notebook_is_stripped_and_parameterised():
    nb = nbformat.read(ROOT / NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip the outputs"
    parameters = next(c for c in code if "parameters" in c.metadata.get("tags", []))
    assert {t.id for t in ast.walk(ast.parse(parameters.source)) if isinstance(t, ast.Name)} == {
        "experiment",
        "method",
        "image",
    }
    assert nb.metadata["kernelspec"]["name"] == "gadlib"


@pytest.mark.pipeline
def test_the_explorer_runs_headless_after_dvc_repro(tiny_pipeline, tmp_path):
    output = tmp_path / "explore.ipynb"
    run_command(
        ["python", "-m", "tools.run_notebook", NOTEBOOK, str(output), "-p", "method", "Saliency"], tiny_pipeline.repo
    )
    outputs = [o for c in nbformat.read(output, as_version=4).cells for o in c.get("outputs", [])]
    assert "text/html" in outputs[0].data  # the overview table
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 1  # the controls
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 4, json.dumps([o.output_type for o in outputs])  # maps, masks, hulls, occlusion
    assert not [o for o in outputs if o.output_type == "error"]
