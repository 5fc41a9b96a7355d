"""The metrics file and report: every test judged once, and sentences that follow the verdicts."""

import json

import pandas as pd

from gadlib.pipeline import report
from gadlib.pipeline.params import load_params
from gadlib.pipeline.paths import ExperimentPaths


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
    base = {k: 0.5 for k in report.METHOD_KEYS}
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
    pd.DataFrame(
        [
            {
                "support_set": "pair",
                "model": 0,
                "alpha": 0.0,
                "accuracy": 0.75,
                "agreement": 1.0,
                "margin": 2.0,
                "target_margin": 2.0,
            },
            {
                "support_set": "pair",
                "model": 1,
                "alpha": 0.5,
                "accuracy": 0.7,
                "agreement": 0.9,
                "margin": 2.5,
                "target_margin": 3.0,
            },
        ]
    ).to_csv(paths.fidelity, index=False)
    summary = {
        "fills": ["black", "mean"],
        "rc_bounded_by_construction": bounded,
        "methods": methods,
        "controls": {"alpha0": {"methods": controls}} if controls else {},
    }
    paths.summary.write_text(json.dumps(summary))


def collected():
    return report.collect_metrics(["pair"], alpha=0.05, min_pairs=10)


def test_collect_metrics_judges_every_test_once(stage_outputs):
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
    metrics = collected()
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
    # tests judged: Saliency rs_gad_vs_rest and mean fill, IG mean fill, 2 controls (IG's rs test has n = 5)
    assert report._count_tests(metrics) == 5
    controls = metrics["pair"]["controls"]["alpha0"]["methods"]["Saliency"]["tests"]
    assert {t["verdict"] for t in controls.values()} == {"not significant"}


def test_the_report_says_what_the_tests_say(stage_outputs):
    write_experiment(
        "pair",
        {
            "Saliency": method_summary(rs_gad_vs_rest=stats(p=0.001)),
            "InputXGradient": method_summary(rs_gad_vs_rest=stats(p=0.38, share=0.6)),
        },
        bounded=False,
    )
    text = report.render_report(collected(), load_params(), {"RC": "figures/rc.png"})
    line = next(x for x in text.splitlines() if x.startswith("- **RS(GAD regions) > RS(original regions"))
    assert "**supported** for Saliency in pair (80% of 30 images go the paper's way" in line
    assert "**not significant** for 1 of 2: InputXGradient in pair" in line
    assert "by construction" not in next(x for x in text.splitlines() if x.startswith("- **RC < 1"))
    assert "| pair | Saliency | rs_gad_vs_rest | 30 |" in text
    assert "![RC](figures/rc.png)" in text and "Reconstruction choices" in text and "top 10% of pixels" in text


def test_a_fill_that_changes_a_verdict_is_named(stage_outputs):
    write_experiment("pair", {"Saliency": method_summary(rs_gad_vs_rest=stats(p=0.001))})
    text = report.render_report(collected(), load_params(), {})
    assert "depends on the fill for Saliency in pair (black: supported, mean: not significant)" in text
