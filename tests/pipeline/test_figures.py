"""The figures of notebooks/06_figures.ipynb (and the explorer): tiny saved outputs in, the report's
figures (titles, panels, drops, files) out; the notebook itself on those outputs (pipeline-marked)."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from gadlib.common.atomic import save_arrays  # noqa: E402
from gadlib.project import figures  # noqa: E402
from gadlib.project.maps import example_region_sets  # noqa: E402
from gadlib.project.params import validate_params  # noqa: E402
from gadlib.project.paths import ExperimentPaths  # noqa: E402
from tests.fixtures import ROOT  # noqa: E402
from tools.run_notebook import run  # noqa: E402

SIZE = 12
INDEX = np.array([11, 30, 38])  # dataset indices of the explained images: not 0, 1, 2
METHODS = ["Saliency", "InputXGradient"]
from gadlib.evaluation.table import REGION_SETS  # noqa: E402

pytestmark = pytest.mark.usefixtures("close_figures")


@pytest.fixture
def tiny_params(params):
    """params.yaml with two methods, K = 2 support models and 2 example images."""
    params["attribution"]["methods"] = METHODS
    params["support"]["alphas"] = [0.5, 1.0]
    params["figures"]["n_examples"] = 2
    return validate_params(params)


def saved_outputs(seed: int = 0, n_models: int = 3) -> dict[str, np.ndarray]:
    """What the attribute stage saves for one method (notebooks/04_attribute.ipynb), for 3 tiny images."""
    rng = np.random.default_rng(seed)
    n = len(INDEX)
    importance = rng.uniform(0, 0.1, size=(n_models, n, SIZE, SIZE)).astype(np.float32)
    importance[:, :, 2:6, 3:8] += 1.0  # a hot block every model agrees on, so GAD keeps part of it
    importance[0, :, 8:11, 1:4] += 1.0  # and one only the original has
    gad_importance = np.where(importance[0] >= 1.0, importance[0], 0.0) * (np.arange(SIZE) < 6)[None, :, None]
    return {
        "index": INDEX,
        "images": rng.uniform(0, 1, size=(n, 1, SIZE, SIZE)).astype(np.float32),
        "targets": np.zeros(n, dtype=np.int64),
        "labels": np.zeros(n, dtype=np.int64),
        "support_set": np.zeros(n, dtype=np.int64),
        "importance": importance,
        "masks": importance >= 1.0,
        "consistency": (importance >= 1.0).all(axis=0),
        "gad": gad_importance[:, None],
        "gad_importance": gad_importance.astype(np.float32),
    }


def hull_table(experiments, methods, drop=lambda experiment, method, region_set, image: 9.0) -> pd.DataFrame:
    """Rows with the columns of gadlib.evaluation.table.evaluate_maps, one per experiment, image, method, set."""
    rows = []
    for experiment in experiments:
        for method in methods:
            for image in INDEX:
                for region_set in REGION_SETS:
                    value = drop(experiment, method, region_set, int(image))
                    rows.append(
                        {
                            "experiment": experiment,
                            "image": int(image),
                            "method": method,
                            "target": 0,
                            "region_set": region_set,
                            "n_pixels": 10,
                            "n_regions": 1,
                            "complexity": 0.2,
                            "hull_area": 20.0,
                            "area_pixels": 20,
                            "score": 3.0,
                            "occluded_score": 3.0 - value,
                            "score_drop": value,
                            "rs": value / 20,
                            "rc": 0.25 if region_set == "gad" else np.nan,
                        }
                    )
    return pd.DataFrame(rows)


def fidelity_table(experiment: str, alphas) -> pd.DataFrame:
    """Rows with the columns of the train_support stage's fidelity.csv: the original, then each support model."""
    return pd.DataFrame(
        [
            {
                "experiment": experiment,
                "support_set": "pair",
                "model": model,
                "alpha": alpha,
                "accuracy": 0.9 - 0.01 * model,
                "agreement": 1.0 - 0.02 * model,
                "margin": 2.0 + alpha,
                "target_margin": 2.0 + 1.1 * alpha,
                "final_loss": np.nan if model == 0 else 0.1 * model,
                "train_seconds": 1.0,
            }
            for model, alpha in enumerate([0.0, *alphas])
        ]
    )


def write_stage_outputs(params, experiments) -> None:
    """What the attribute, hull_metrics and train_support stages save, under the stage_outputs folders."""
    for e, name in enumerate(experiments):
        paths = ExperimentPaths(name)
        for m, method in enumerate(params.attribution.methods):
            save_arrays(paths.attributions(method), **saved_outputs(seed=10 * e + m))
        paths.reports.mkdir(parents=True)
        hull_table([name], params.attribution.methods).to_csv(paths.hull_metrics, index=False)
        fidelity_table(name, params.support.alpha_schedule).to_csv(paths.fidelity, index=False)


def region_sets(tiny_params, n_examples=2):
    return example_region_sets(saved_outputs(), tiny_params, n_examples)


# --------------------------------------------------------------------------------------------
# one figure at a time
# --------------------------------------------------------------------------------------------
def test_model_labels_name_each_support_model_by_its_alpha():
    assert figures.model_labels([0.5, 1.0]) == ["original", "support 1 (α=0.5)", "support 2 (α=1)"]


def test_example_region_sets_take_the_first_images(tiny_params):
    sets = region_sets(tiny_params, n_examples=2)
    assert len(sets.polygons) == 2
    assert set(sets.masks) == set(REGION_SETS) and sets.masks["gad"].shape == (2, SIZE, SIZE)
    assert sets.masks["gad"].any() and sets.masks["rest"].any()  # the tiny maps give regions to draw
    assert len(region_sets(tiny_params, n_examples=10).polygons) == len(INDEX)  # no more than were saved


def test_hulls_figure_keeps_its_title_and_heads_each_image_by_its_index(tiny_params):
    fig = figures.hulls_figure(saved_outputs(), region_sets(tiny_params), "a, Saliency: original hulls against GAD")
    assert fig.get_suptitle() == "a, Saliency: original hulls against GAD"  # not the last image's heading
    assert [ax.get_title() for ax in fig.axes] == ["image 11", "image 30"]  # one axis per example image
    assert all(ax.patches for ax in fig.axes)


def test_attribution_grid_rows_are_examples_times_methods(tiny_params):
    saved = {method: saved_outputs(seed=m) for m, method in enumerate(METHODS)}
    fig = figures.attribution_grid(saved, [0.5, 1.0], n_examples=2)
    image_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    n_cols = 1 + 3 + 1  # the image, the original and 2 support models, GAD
    assert len(image_axes) == 2 * len(METHODS) * n_cols
    assert [ax.get_title() for ax in image_axes[:n_cols]] == [
        "image",
        "original",
        "support 1 (α=0.5)",
        "support 2 (α=1)",
        "GAD",
    ]
    assert [image_axes[r * n_cols].get_ylabel() for r in range(4)] == [
        "image 0\nSaliency",
        "image 0\nInputXGradient",
        "image 1\nSaliency",
        "image 1\nInputXGradient",
    ]
    np.testing.assert_array_equal(image_axes[n_cols - 1].images[0].get_array(), saved["Saliency"]["gad_importance"][0])


def test_occlusion_figure_takes_the_drops_of_its_own_experiment_and_method(tiny_params):
    position = {int(image): k for k, image in enumerate(INDEX)}

    def drop(experiment, method, region_set, image):  # only ("b", "Saliency") has drops below 9
        if (experiment, method) != ("b", "Saliency"):
            return 9.0
        return 0.1 * (position[image] + 1) + REGION_SETS.index(region_set)

    table = hull_table(["a", "b"], METHODS, drop)
    table = table[~((table["experiment"] == "b") & (table["image"] == 30) & (table["region_set"] == "rest"))]
    fig = figures.occlusion_figure(
        saved_outputs(), region_sets(tiny_params), table, "b", "Saliency", "black", None, 2.0
    )
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 2 * (1 + len(REGION_SETS))
    assert all("drop 9" not in title for title in titles)
    assert "drop 0.1 " in titles[1] and titles[1].startswith("original")  # image 11
    assert "drop 1.1 " in titles[2] and titles[2].startswith("gad")
    row = 1 + len(REGION_SETS)  # the fill, then one panel per region set
    assert "drop 3.2 " in titles[row + 4] and titles[row + 4].startswith("random")  # image 30
    assert "drop n/a" in titles[row + 3]  # image 30 has no "rest" row


def test_occlusion_figure_fills_with_the_given_mean(tiny_params):
    sets = region_sets(tiny_params, n_examples=1)
    table = hull_table(["a"], ["Saliency"])
    fig = figures.occlusion_figure(saved_outputs(), sets, table, "a", "Saliency", "mean", [0.25], 2.0)
    shown = np.asarray(fig.axes[1].images[0].get_array())  # image 11, "original" occluded
    mask = sets.masks["original"][0]
    np.testing.assert_allclose(shown[mask], 0.25)
    np.testing.assert_allclose(shown[~mask], saved_outputs()["images"][0, 0][~mask])


# --------------------------------------------------------------------------------------------
# the whole notebook, on tiny saved outputs
# --------------------------------------------------------------------------------------------
def test_one_image_keeps_the_arrays_and_region_sets_of_that_image(tiny_params):
    saved, sets = saved_outputs(), region_sets(tiny_params, n_examples=3)
    one, one_sets = figures.one_image(saved, sets, 1)
    assert one["index"].tolist() == [30] and one["importance"].shape == (3, 1, SIZE, SIZE)
    np.testing.assert_array_equal(one_sets.masks["gad"][0], sets.masks["gad"][1])
    assert one_sets.polygons == sets.polygons[1:2] and one_sets.subset_draws.shape[1] == 1


def summary_of(methods) -> dict:
    """A step-5 summary.json whose tests the notebook judges: one supported claim, one mean-fill test."""
    test = {"n": 30, "median_diff": 0.1, "ci95": [0.05, 0.2], "p": 0.001, "share_positive": 0.7, "share_negative": 0.3}
    keys = ("n_images", "rc_median", "rc_median_nonempty", "gad_empty", "rs_gad_mean", "rs_rest_mean")
    method = {
        **dict.fromkeys(keys, 0.5),
        "tests": {"rs_gad_vs_rest": test, "rc_below_1": {**test, "median_diff": -0.5}},
        "rs_by_fill": {"mean": {**test, "p": 0.6, "median_diff": -0.01}},
        "agreement": {"observed": [0.6, 0.3, 0.1], "independent": [0.81, 0.18, 0.01]},
    }
    return {"fills": ["black", "mean"], "rc_bounded_by_construction": True, "methods": dict.fromkeys(methods, method)}


@pytest.mark.pipeline  # starts a Jupyter kernel: about 20 s
def test_the_figures_notebook_writes_every_figure_the_metrics_and_the_report(project_dir, params):
    params["attribution"]["methods"] = METHODS
    params["support"]["alphas"] = [0.5, 1.0]
    params["figures"]["n_examples"] = 2
    (project_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    tiny = validate_params(params)
    names = tiny.experiment_names
    write_stage_outputs(tiny, names)
    for name in names:
        paths = ExperimentPaths(name)
        paths.classifier_summary.write_text('{"accuracy": 0.9}')
        paths.summary.write_text(json.dumps(summary_of(METHODS)))

    output = project_dir / "reports" / "notebooks" / "06_figures.ipynb"
    run(ROOT / "notebooks" / "06_figures.ipynb", output, {}, project_dir)

    reports = project_dir / "reports"
    metrics = json.loads((reports / "metrics.json").read_text())
    assert {t["verdict"] for m in metrics[names[0]]["methods"].values() for t in m["tests"].values()} == {
        "supported",
        "by construction",
    }
    per_experiment = [
        f"figures/{stem}_{name}.png" for name in names for stem in ("attribution_grid", "hulls", "occlusion")
    ]
    expected = ["figures/claims.png", "figures/agreement.png", *per_experiment]
    expected += ["figures/rc_distributions.png", "figures/rs_comparison.png", "figures/support_fidelity.png"]
    report = (reports / "report.md").read_text()
    links = [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert links == expected, "the report links every figure, in report order"
    assert sorted(p.name for p in (reports / "figures").iterdir()) == sorted(p.split("/")[1] for p in expected)
    assert all((reports / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in expected)
    assert "**supported** for" in report and "## Reconstruction choices in force" in report
    rc = pd.read_csv(reports / "plots" / "rc.csv")
    assert rc.columns.tolist() == ["experiment", "method", "image", "rc"]
    assert len(rc) == len(names) * len(METHODS) * len(INDEX)  # one row per image and method
    assert set(pd.read_csv(reports / "plots" / "rs.csv")["region_set"]) == set(REGION_SETS)
    shown = json.loads(output.read_text())
    images = [o for c in shown["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == len(expected), "the notebook shows every figure it saves"
