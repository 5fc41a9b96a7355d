"""The explorer notebook and its helpers: one experiment, method and image of the saved outputs at a time."""

from __future__ import annotations

import ast
import json

import matplotlib

matplotlib.use("Agg")

import nbformat  # noqa: E402
import pytest  # noqa: E402

from gadlib.pipeline import explore  # noqa: E402
from gadlib.pipeline.params import validate_params  # noqa: E402
from gadlib.pipeline.paths import ROOT  # noqa: E402
from tests.fixtures import run_command  # noqa: E402
from tests.pipeline.test_figures import INDEX, METHODS, write_stage_outputs  # noqa: E402

NOTEBOOK = ROOT / "notebooks" / "explore.ipynb"


pytestmark = pytest.mark.usefixtures("close_figures")


@pytest.fixture
def tiny_params(params):
    """params.yaml with the methods of the saved outputs of test_figures and K = 2 support models."""
    params["attribution"]["methods"] = METHODS
    params["support"]["alphas"] = [0.5, 1.0]
    return validate_params(params)


@pytest.fixture
def explorer(stage_outputs, tiny_params):
    write_stage_outputs(tiny_params, tiny_params.experiment_names[:1])  # the second experiment has not run
    return explore.Explorer(tiny_params)


def test_only_experiments_with_saved_outputs_are_offered(explorer, tiny_params):
    first = tiny_params.experiment_names[0]
    assert explorer.methods_by_experiment == {first: METHODS}
    overview = explorer.overview()
    assert overview[["experiment", "method", "images"]].values.tolist() == [[first, m, len(INDEX)] for m in METHODS]
    with pytest.raises(ValueError, match="experiment 'pullover_vs_coat' has no saved maps; available"):
        explorer.explained("pullover_vs_coat")
    with pytest.raises(ValueError, match="method 'SmoothGrad' has no saved maps"):
        explorer.explained(first, "SmoothGrad")


def test_no_run_yet_says_to_run_the_pipeline(stage_outputs, tiny_params):
    with pytest.raises(ValueError, match="run `dvc repro` first"):
        _ = explore.Explorer(tiny_params).experiments


def test_images_are_chosen_by_their_dataset_index(explorer):
    explained = explorer.explained(method="InputXGradient")
    assert explained.image_ids == INDEX.tolist()
    assert explained.position(int(INDEX[2])) == 2 and explained.position(None) == 0
    with pytest.raises(ValueError, match=r"image 5 was not explained .* the explained images are \[11, 30, 38\]"):
        explained.position(5)
    assert explore.image_options(explained)[1] == ("test image 30", 30)
    assert explorer.explained(method="InputXGradient") is explained  # loaded once


def test_one_image_keeps_the_arrays_and_region_sets_of_that_image(explorer):
    explained = explorer.explained()
    saved, sets = explore.one_image(explained, 1)
    assert saved["index"].tolist() == [INDEX[1]]
    assert saved["importance"].shape[:2] == (explained.saved["importance"].shape[0], 1)
    assert (saved["masks"][:, 0] == explained.saved["masks"][:, 1]).all()
    assert sets.polygons == explained.region_sets.polygons[1:2]
    assert all(mask.shape[0] == 1 for mask in sets.masks.values())
    assert (sets.masks["gad"][0] == explained.region_sets.masks["gad"][1]).all()
    assert sets.n_pixels["gad"].tolist() == explained.region_sets.n_pixels["gad"][1:2].tolist()


def test_the_figures_of_one_image(explorer, tiny_params):
    maps, masks, hulls, occlusion = explorer.figures(method="Saliency", image=int(INDEX[2]))
    n_models = len(tiny_params.support.alphas) + 1
    assert len(masks.axes) == n_models + 1  # each model's mask, then the consistency
    assert [ax.get_title().split(":")[0] for ax in masks.axes][-1] == "consistency"
    assert f"image {INDEX[2]}" in masks._suptitle.get_text()
    assert hulls.axes[0].get_title() == f"image {INDEX[2]}"
    assert len(occlusion.axes) >= 2 and maps.axes


def test_the_controls_follow_the_choices(explorer, tiny_params):
    widgets = pytest.importorskip("ipywidgets")
    ui = explore.controls(explorer, method="InputXGradient", image=int(INDEX[1]))
    assert isinstance(ui, widgets.VBox)
    experiment, method, image = ui.children[0].children
    assert (experiment.value, method.value, image.value) == (tiny_params.experiment_names[0], "InputXGradient", 30)
    method.value = "Saliency"  # the image stays where that method explained it too
    assert image.value == 30 and image.options == tuple(explore.image_options(explorer.explained(method="Saliency")))


def test_the_notebook_is_thin_and_stripped():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip the outputs"
    for cell in code:  # helpers belong in gadlib.pipeline.explore, where they are tested
        tree = ast.parse(cell.source)
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.Lambda)]
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
        ["python", "-m", "gadlib.pipeline.stage", "notebooks/explore.ipynb", str(output), "-p", "method", "Saliency"],
        tiny_pipeline.repo,
    )
    outputs = [o for c in nbformat.read(output, as_version=4).cells for o in c.get("outputs", [])]
    assert "text/html" in outputs[0].data  # the overview table
    assert "application/vnd.jupyter.widget-view+json" in outputs[1].data  # the controls
    assert any(o.output_type == "stream" and ", Saliency: test image" in o.text for o in outputs)
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 4, json.dumps([o.output_type for o in outputs])  # maps, masks, hulls, occlusion
    assert not [o for o in outputs if o.output_type == "error"]
