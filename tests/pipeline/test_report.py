"""The metrics file and report: verdicts on the paper's claims and the rendered tables."""

import json
import math

import pandas as pd
import pytest

from gadlib.pipeline import report
from gadlib.pipeline.paths import ExperimentPaths


def method_metrics(**kw):
    base = {k: 0.5 for k in report.METHOD_KEYS}
    base.update(n_images=10, gad_empty=0.0)
    base.update(kw)
    return base


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"rc_median": 0.6, "rc_below_1": 0.8, "rs_gad_beats_rest": 0.7}, {"rc": "supported", "rs": "supported"}),
        (
            {"rc_median": 1.2, "rc_below_1": 0.3, "rs_gad_beats_rest": 0.2},
            {"rc": "not supported", "rs": "not supported"},
        ),
        (
            {"rc_median": 0.9, "rc_below_1": 0.4, "rs_gad_beats_rest": 0.5},
            {"rc": "not supported", "rs": "not supported"},
        ),
        (
            {"rc_median": math.nan, "rc_below_1": None, "rs_gad_beats_rest": None},
            {"rc": "not measurable", "rs": "not measurable"},
        ),
    ],
)
def test_claim_verdicts(values, expected):
    assert report.claim_verdicts(method_metrics(**values)) == expected


def test_mostly_empty_gad_maps_do_not_count_as_support():
    verdicts = report.claim_verdicts(method_metrics(rc_median=0.0, rc_below_1=1.0, gad_empty=0.9))
    assert verdicts["rc"] == "degenerate: 90% of GAD maps empty"


def test_collect_metrics_reads_every_experiment(stage_outputs):
    paths = ExperimentPaths("pair")
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
    paths.summary.write_text(json.dumps({"Saliency": method_metrics(rc_median=0.4)}))
    metrics = report.collect_metrics(["pair"])
    assert metrics["pair"]["accuracy"] == 0.75
    assert [s["alpha"] for s in metrics["pair"]["support"]] == [0.5]  # the original is not a support model
    assert metrics["pair"]["methods"]["Saliency"]["rc_median"] == 0.4


def test_render_report_names_claims_and_choices():
    from gadlib.pipeline.params import load_params

    params = load_params()
    metrics = {
        name: {"accuracy": 0.8, "support": [], "methods": {"Saliency": method_metrics(rc_median=0.7, rc_below_1=0.9)}}
        for name in params.experiments
    }
    text = report.render_report(metrics, params, {"RC": "figures/rc.png"})
    assert "| tshirt_vs_shirt | Saliency | 10 | 0.7 [" in text and "± 0.5" in text
    assert "supported" in text
    assert "![RC](figures/rc.png)" in text
    assert "Reconstruction choices" in text and "top 10% of pixels" in text
