"""The metrics file and the report (notebooks/06_figures.ipynb): every test judged once, and
sentences that follow the verdicts. The notebook's own functions, on summaries written by hand."""

import json

import pandas as pd
import pytest

from gadlib.project.params import load_params
from gadlib.project.paths import ExperimentPaths
from tests.notebooks import notebook_function

NOTEBOOK = "notebooks/06_figures.ipynb"


def stats(p=0.01, n=30, median=0.2, share=0.8):
    return {
        "n": n,
        "median_diff": median,
        "ci95": [median / 2, median * 2],
        "p": p,
        "share_positive": share,
        "share_negative": 1 - share,
    }


def method_summary(**tests):
    base = {k: 0.5 for k in notebook_function(NOTEBOOK, "collect_metrics").__globals__["METHOD_KEYS"]}
    base.update(n_images=30, gad_empty=0.0)
    return {
        **base,
        "agreement": {"observed": [0.7, 0.2, 0.1], "independent": [0.81, 0.18, 0.01]},
        "tests": {"rc_below_1": stats(median=-0.5, share=0.0) | {"share_negative": 1.0}, **tests},
        "rs_by_fill": {"mean": stats(p=0.5, median=-0.01, share=0.45)},
    }


def write_experiment(name, methods, controls=None, bounded=True):
    paths = ExperimentPaths(name)
    paths.reports.mkdir(parents=True)
    paths.classifier_summary.write_text(json.dumps({"accuracy": 0.75}))
    fidelity = [
        {"support_set": "pair", "model": 0, "alpha": 0.0, "accuracy": 0.75, "agreement": 1.0, "margin": 2.0},
        {"support_set": "pair", "model": 1, "alpha": 0.5, "accuracy": 0.7, "agreement": 0.9, "margin": 2.5},
    ]
    pd.DataFrame(fidelity).assign(target_margin=[2.0, 3.0]).to_csv(paths.fidelity, index=False)
    summary = {
        "fills": ["black", "mean"],
        "rc_bounded_by_construction": bounded,
        "methods": methods,
        "controls": {"alpha0": {"methods": controls}} if controls else {},
    }
    paths.summary.write_text(json.dumps(summary))


def judged(name="pair"):
    """(metrics, number of tests judged), as the notebook computes them."""
    params = load_params()
    metrics = notebook_function(NOTEBOOK, "collect_metrics")([name])
    return metrics, notebook_function(NOTEBOOK, "judge_all", stats=params.statistics)(metrics)


def report_text(metrics, n_tests) -> str:
    params = load_params()
    sections = notebook_function(NOTEBOOK, "supports_section")(metrics, params, n_tests)
    sections += notebook_function(NOTEBOOK, "tests_section")(metrics)
    return "\n".join(sections + notebook_function(NOTEBOOK, "choices_section")(params))


@pytest.fixture
def project(project_dir):
    return project_dir


def test_collect_metrics_judges_every_test_once(project):
    control = {
        "n_images": 30,
        "rc_median": 0.1,
        "rc_median_nonempty": 0.1,
        "gad_empty": 0.1,
        "rs_gad_mean": 0.2,
        "rs_gad_median": 0.2,
        "tests": {
            "rs_gad_vs_alpha0": stats(p=0.3),
            "empty_gad_vs_alpha0": {"n": 30, "rate_a": 0.1, "rate_b": 0.2, "diff": -0.1, "ci95": [-0.2, 0], "p": 0.2},
        },
    }
    write_experiment(
        "pair",
        {
            "Saliency": method_summary(rs_gad_vs_rest=stats(p=0.001)),
            "IntegratedGradients": method_summary(rs_gad_vs_rest=stats(p=0.04, n=5)),
        },
        controls={"Saliency": control},
    )
    metrics, n_tests = judged()
    assert metrics["pair"]["accuracy"] == 0.75
    assert [s["alpha"] for s in metrics["pair"]["support"]] == [0.5]  # the original is not a support model
    saliency = metrics["pair"]["methods"]["Saliency"]
    assert saliency["tests"]["rc_below_1"]["verdict"] == "by construction"
    assert saliency["tests"]["rc_below_1"]["p_adjusted"] is None
    assert saliency["tests"]["rs_gad_vs_rest"]["verdict"] == "supported"
    assert metrics["pair"]["methods"]["IntegratedGradients"]["tests"]["rs_gad_vs_rest"]["verdict"] == "degenerate"
    # the black fill's entry is the main test itself; the mean fill is its own test
    assert saliency["rs_by_fill"]["black"]["p_adjusted"] == saliency["tests"]["rs_gad_vs_rest"]["p_adjusted"]
    assert saliency["rs_by_fill"]["black"]["rs_gad_beats_rest"] == 0.8
    assert saliency["rs_by_fill"]["mean"]["verdict"] == "not significant"
    # corrected together: Saliency's rs test and mean fill, IG's mean fill, 2 controls (IG's rs test has
    # n = 5 and rc_below_1 holds by construction: judged, not corrected)
    assert n_tests == 5
    adjusted = [
        t["p_adjusted"]
        for m in metrics["pair"]["methods"].values()
        for t in [*m["tests"].values(), m["rs_by_fill"]["mean"]]
        if t["p_adjusted"] is not None
    ]
    assert (
        len(adjusted) == 3
    )  # Saliency's rs test and both mean fills; IG's rs test has n = 5, rc_below_1 is by construction
    controls = metrics["pair"]["controls"]["alpha0"]["methods"]["Saliency"]["tests"]
    assert {t["verdict"] for t in controls.values()} == {"not significant"}


def test_the_report_says_what_the_tests_say(project):
    write_experiment(
        "pair",
        {
            "Saliency": method_summary(rs_gad_vs_rest=stats(p=0.001)),
            "InputXGradient": method_summary(rs_gad_vs_rest=stats(p=0.38, share=0.6)),
        },
        bounded=False,
    )
    text = report_text(*judged())
    line = next(x for x in text.splitlines() if x.startswith("- **RS(GAD regions) > RS(original regions"))
    assert "**supported** for Saliency in pair (80% of 30 images go the paper's way" in line
    assert "**not significant** for 1 of 2: InputXGradient in pair" in line
    assert "by construction" not in next(x for x in text.splitlines() if x.startswith("- **RC < 1"))
    assert "| pair | Saliency | rs_gad_vs_rest | 30 |" in text
    assert "Reconstruction choices" in text and "top 10% of pixels" in text


def test_a_fill_that_changes_a_verdict_is_named(project):
    write_experiment("pair", {"Saliency": method_summary(rs_gad_vs_rest=stats(p=0.001))})
    text = report_text(*judged())
    assert "depends on the fill for Saliency in pair (black: supported, mean: not significant)" in text


def test_the_claims_table_has_a_row_per_judged_median_test(project):
    write_experiment("pair", {"Saliency": method_summary(rs_gad_vs_rest=stats(p=0.001))})
    metrics, _ = judged()
    table = notebook_function(NOTEBOOK, "claims_table")(metrics)
    assert list(table["claim"]) == ["rc_below_1", "rs_gad_vs_rest", "rs_gad_vs_rest (mean fill)"]
    assert set(table["label"]) == {"Saliency, pair"} and table["ci_low"].notna().all()
