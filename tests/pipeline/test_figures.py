"""The figures stage's assembly: tiny saved outputs in, the report's figures (titles, panels, drops, files) out."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from gadlib import plots as plotting  # noqa: E402
from gadlib.common.atomic import save_arrays  # noqa: E402
from gadlib.pipeline import figures  # noqa: E402
from gadlib.pipeline.params import validate_params  # noqa: E402
from gadlib.pipeline.paths import ExperimentPaths  # noqa: E402

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
    """What the attribute stage saves for one method (gadlib.pipeline.attribute.run), for 3 tiny images."""
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
    return figures.example_region_sets(saved_outputs(), tiny_params.regions, tiny_params.seed, n_examples)


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
# the whole stage
# --------------------------------------------------------------------------------------------
def test_read_tables_concatenates_the_experiments(stage_outputs, tiny_params):
    write_stage_outputs(tiny_params, ["a", "b"])
    hull, fidelity = figures.read_tables(["a", "b"])
    assert list(pd.unique(hull["experiment"])) == ["a", "b"]
    assert len(hull) == 2 * len(METHODS) * len(INDEX) * len(REGION_SETS)
    assert list(fidelity["experiment"]) == ["a"] * 3 + ["b"] * 3


def test_save_report_figures_writes_every_figure_in_report_order(stage_outputs, tiny_params, monkeypatch):
    names = tiny_params.experiment_names
    write_stage_outputs(tiny_params, names)
    drawn = {}
    real_save = plotting.save_figure

    def record(fig, path):
        drawn[path.name] = (fig.get_suptitle(), [ax.get_title() for ax in fig.axes])
        real_save(fig, path)

    monkeypatch.setattr(figures.plotting, "save_figure", record)
    saved = figures.save_report_figures(tiny_params, names)

    per_experiment = [
        (f"{kind}, {name}", f"figures/{stem}_{name}.png")
        for name in names
        for kind, stem in (
            ("Attribution maps", "attribution_grid"),
            ("Hull regions", "hulls"),
            ("Occlusion examples", "occlusion"),
        )
    ]
    assert list(saved.items()) == per_experiment + [
        ("RC per method and experiment", "figures/rc_distributions.png"),
        ("RS: GAD regions against the rest, the controls and the baselines", "figures/rs_comparison.png"),
        ("Support-model fidelity against α", "figures/support_fidelity.png"),
    ]
    folder = stage_outputs.parent / "reports" / "figures"
    assert sorted(p.name for p in folder.iterdir()) == sorted(path.split("/")[1] for path in saved.values())
    assert all((folder.parent / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in saved.values())
    assert plt.get_fignums() == []  # every figure closed once written

    name = names[0]
    title, panels = drawn[f"hulls_{name}.png"]
    assert title == f"{name}, Saliency: original hulls against GAD hulls"
    assert panels == ["image 11", "image 30"]  # n_examples = 2, headed by dataset index
    assert len(drawn[f"occlusion_{name}.png"][1]) == 2 * (1 + len(REGION_SETS))
    assert all("drop 9 " in t for t in drawn[f"occlusion_{name}.png"][1] if t.startswith(REGION_SETS))


def test_save_report_figures_to_another_folder_links_it_from_reports(stage_outputs, tiny_params):
    write_stage_outputs(tiny_params, ["a"])
    saved = figures.save_report_figures(tiny_params, ["a"], folder=stage_outputs.parent / "elsewhere")
    assert saved["Hull regions, a"] == "../elsewhere/hulls_a.png"
    assert (stage_outputs.parent / "elsewhere" / "hulls_a.png").is_file()
    assert not (stage_outputs.parent / "reports" / "figures").exists()


def judged_metrics(names, methods) -> dict:
    test = {
        "n": 30,
        "median_diff": 0.1,
        "ci95": [0.05, 0.2],
        "p": 0.01,
        "share_positive": 0.7,
        "share_negative": 0.3,
        "p_adjusted": 0.02,
        "verdict": "supported",
    }
    method = {
        "tests": {
            "rs_gad_vs_rest": test,
            "rc_vs_top_n": {**test, "median_diff": -0.1, "ci95": [-0.2, 0.0], "verdict": "not significant"},
        },
        "rs_by_fill": {"black": test, "mean": {**test, "verdict": "contradicted", "median_diff": -0.3}},
        "agreement": {"observed": [0.6, 0.3, 0.1], "independent": [0.81, 0.18, 0.01]},
    }
    return {name: {"fills": ["black", "mean"], "methods": {m: method for m in methods}} for name in names}


def test_claims_and_agreement_figures_come_first_from_the_metrics(stage_outputs, tiny_params):
    names = tiny_params.experiment_names
    write_stage_outputs(tiny_params, names)
    metrics = judged_metrics(names, METHODS)
    table = figures.claims_table(metrics)
    assert len(table) == len(names) * len(METHODS) * 3  # two claims and the mean-fill test
    assert set(table["verdict"]) == {"supported", "not significant", "contradicted"}
    saved = figures.save_report_figures(tiny_params, names, metrics)
    assert list(saved.values())[:2] == ["figures/claims.png", "figures/agreement.png"]
    agreement = figures.agreement_table(metrics)
    assert list(agreement["maps"][:3]) == [0, 1, 2] and agreement["observed"].iloc[2] == 0.1
