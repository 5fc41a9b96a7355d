"""The metrics file and the Markdown report that a researcher reads first.

``collect_metrics`` gathers every experiment's saved summaries into the dictionary written to
``reports/metrics.json``; ``render_report`` turns it into ``reports/report.md``: the paper's claims
beside the measured numbers, the figures, and the reconstruction choices in force.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from gadlib.pipeline.params import Params
from gadlib.pipeline.paths import ExperimentPaths

METHOD_KEYS = (
    "rc_mean",
    "rc_median",
    "rc_q25",
    "rc_q75",
    "rc_below_1",
    "gad_empty",
    "rs_gad_mean",
    "rs_gad_std",
    "rs_rest_mean",
    "rs_rest_std",
    "rs_random_mean",
    "rs_gad_beats_rest",
    "rs_gad_beats_random",
    "n_images",
)


def collect_metrics(experiments: list[str]) -> dict:
    """Metrics of every experiment, keyed by experiment: classifier test ``accuracy``, ``support``
    (one entry per support model: alpha, accuracy, agreement, margin, target_margin), and
    ``methods`` (per attribution method: RC and RS summaries over the explained images)."""
    metrics = {}
    for name in experiments:
        paths = ExperimentPaths(name)
        classifier = json.loads(paths.classifier_summary.read_text())
        fidelity = pd.read_csv(paths.fidelity)
        summary = json.loads(paths.summary.read_text())
        supports = fidelity[fidelity["model"] > 0]
        metrics[name] = {
            "accuracy": classifier["accuracy"],
            "support": [
                {
                    "support_set": row.support_set,
                    "alpha": row.alpha,
                    "accuracy": row.accuracy,
                    "agreement": row.agreement,
                    "margin": row.margin,
                    "target_margin": row.target_margin,
                }
                for row in supports.itertuples()
            ],
            "methods": {m: {k: values.get(k) for k in METHOD_KEYS} for m, values in summary.items()},
        }
    return metrics


def claim_verdicts(method_metrics: dict) -> dict[str, str]:
    """Whether the run supports the paper's two claims for one method, in words.

    RC < 1 is supported when the median RC is below 1 and most images have RC < 1, unless most GAD
    maps are empty (RC = 0 there only says that the models agreed on no pixel); RS(GAD) >
    RS(original − GAD) when GAD wins on most images. "not measurable" when the numbers are missing.
    """

    def verdict(holds: bool | None) -> str:
        return "not measurable" if holds is None else ("supported" if holds else "not supported")

    rc_median, rc_below = method_metrics.get("rc_median"), method_metrics.get("rc_below_1")
    beats = method_metrics.get("rs_gad_beats_rest")
    rc = None if _missing(rc_median) or _missing(rc_below) else (rc_median < 1 and rc_below > 0.5)
    rs = None if _missing(beats) else beats > 0.5
    verdicts = {"rc": verdict(rc), "rs": verdict(rs)}
    empty = method_metrics.get("gad_empty")
    if not _missing(empty) and empty >= 0.5:
        verdicts["rc"] = f"degenerate: {empty:.0%} of GAD maps empty"
    return verdicts


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value, digits: int = 3) -> str:
    if _missing(value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def render_report(metrics: dict, params: Params, figures: dict[str, str], run_notes: list[str] = ()) -> str:
    """The Markdown report.

    Parameters
    ----------
    metrics : from :func:`collect_metrics`
    params : the validated params.yaml
    figures : figure title -> path relative to reports/
    run_notes : extra lines for the "This run" section (sizes, budget reductions)
    """
    lines = [
        "# GAD: results of this run",
        "",
        "Produced by the `figures` stage from the pipeline's outputs (`dvc repro`). Every number "
        "below is read from `reports/metrics.json` and the per-image tables in "
        "`reports/experiments/<experiment>/`.",
        "",
    ]
    lines += ["## This run", ""]
    for name, exp in params.experiments.items():
        classes = exp.classes if isinstance(exp.classes, str) else ", ".join(map(str, exp.classes))
        lines.append(
            f"- **{name}**: {exp.dataset} ({classes}), {exp.architecture} at "
            f"{exp.image_size} px, strategy {exp.strategy}; classifier test accuracy "
            f"{_fmt(metrics[name]['accuracy'])}."
        )
    support = params.support
    lines.append(
        f"- K = {len(support.alphas)} support models, α schedule {support.alphas} × "
        f"{support.alpha_scale} (in units of each logit's std), {support.epochs} epochs, "
        f"Adam lr {support.lr}, {support.init} initialisation."
    )
    lines += [f"- {note}" for note in run_notes]
    lines += [
        "",
        "## The paper's claims against the measured numbers",
        "",
        "RC = hull complexity of the GAD map / that of the original map, per image (lower: GAD "
        "points at less of the image; the paper: RC < 1). RS = score drop per occluded pixel "
        "(higher: the region matters more; the paper: RS(GAD regions) > RS(original regions − "
        "GAD regions)). The random control is a region set of the same area as GAD's.",
        "",
        "| experiment | method | images | RC median [IQR] | RC mean | RC < 1 | GAD empty | RS GAD ± sd | "
        "RS rest ± sd | RS random | RS GAD > rest | RS GAD > random | claim RC < 1 | claim RS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, exp_metrics in metrics.items():
        for method, m in exp_metrics["methods"].items():
            v = claim_verdicts(m)
            lines.append(
                f"| {name} | {method} | {m['n_images']} | {_fmt(m['rc_median'])} [{_fmt(m['rc_q25'])}, "
                f"{_fmt(m['rc_q75'])}] | {_fmt(m['rc_mean'])} | {_fmt(m['rc_below_1'])} | {_fmt(m['gad_empty'])} | "
                f"{_fmt(m['rs_gad_mean'])} ± {_fmt(m['rs_gad_std'])} | {_fmt(m['rs_rest_mean'])} ± "
                f"{_fmt(m['rs_rest_std'])} | {_fmt(m['rs_random_mean'])} | {_fmt(m['rs_gad_beats_rest'])} | "
                f"{_fmt(m['rs_gad_beats_random'])} | {v['rc']} | {v['rs']} |"
            )
    lines += [
        "",
        "## Support models",
        "",
        "Each support model regresses the distanced logits. Accuracy on the held-out test images, "
        "argmax agreement with the original classifier, achieved against target mean margin.",
        "",
        "| experiment | set | α | accuracy | agreement | margin | target margin |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, exp_metrics in metrics.items():
        for s in exp_metrics["support"]:
            lines.append(
                f"| {name} | {s['support_set']} | {_fmt(s['alpha'])} | {_fmt(s['accuracy'])} | "
                f"{_fmt(s['agreement'])} | {_fmt(s['margin'])} | {_fmt(s['target_margin'])} |"
            )
    lines += ["", "## Figures", ""]
    for title, path in figures.items():
        lines += [f"### {title}", "", f"![{title}]({path})", ""]
    lines += [
        "## Reconstruction choices in force",
        "",
        "The paper's full text is not available to this project; these are its documented "
        'choices (README, "Reconstruction choices"), as set in params.yaml for this run.',
        "",
        "| choice | value |",
        "|---|---|",
    ]
    attribution, regions, sens = params.attribution, params.regions, params.sensitivity
    choices = {
        "α schedule (× std of each logit)": f"{support.alphas} × {support.alpha_scale}",
        "support initialisation": support.init,
        "support loss / optimiser": f"MSE on the logits, Adam lr {support.lr}, {support.epochs} epochs",
        "per-pixel importance": attribution.importance,
        "binarisation for fusion": _threshold(attribution),
        "consistency": "kept in every map"
        if attribution.min_agreement is None
        else f"kept in at least {attribution.min_agreement} maps",
        "binarisation for evaluation": _threshold(regions),
        "grouping": f"dilation {regions.dilation} px, 8-connected, min {regions.min_pixels} px",
        "occlusion fill / score": f"{sens.fill} / {sens.score}",
    }
    lines += [f"| {k} | {v} |" for k, v in choices.items()]
    return "\n".join(lines) + "\n"


def _threshold(section) -> str:
    if section.threshold_mode == "quantile":
        return f"top {100 * (1 - section.q):.0f}% of pixels (q = {section.q})"
    return f"pixels ≥ {section.tau} × max"
