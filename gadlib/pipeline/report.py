"""The metrics file and the Markdown report that a researcher reads first.

:func:`collect_metrics` gathers every experiment's saved summaries into the dictionary written to
``reports/metrics.json`` and judges every test of the report together (Benjamini-Hochberg across
all of them, then one verdict each); :func:`render_report` turns it into ``reports/report.md``:
the answer to each claim in a sentence, then the tests, the figures and the choices in force.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from gadlib.evaluation.claims import CLAIMS, CONTROL_CLAIMS, judge
from gadlib.evaluation.statistics import BY_CONSTRUCTION, CONTRADICTED, DEGENERATE, NOT_SIGNIFICANT, SUPPORTED
from gadlib.pipeline.params import Params
from gadlib.pipeline.paths import ExperimentPaths

# the per-method summary keys copied from each experiment's summary.json
METHOD_KEYS = (
    "n_images",
    "rc_mean",
    "rc_median",
    "rc_q25",
    "rc_q75",
    "rc_below_1",
    "rc_median_nonempty",
    "gad_empty",
    "rs_gad_mean",
    "rs_gad_std",
    "rs_rest_mean",
    "rs_rest_std",
    "rs_random_mean",
    "rs_top_n_mean",
    "rs_gad_beats_rest",
    "rs_gad_beats_random",
    "n_rs_gad_rest_pairs",
)
CONTROL_KEYS = ("n_images", "rc_median", "rc_median_nonempty", "gad_empty", "rs_gad_mean", "rs_gad_median")
EMPTY_RATE = "empty_gad_vs_alpha0"
VERDICT_ORDER = (SUPPORTED, CONTRADICTED, NOT_SIGNIFICANT, DEGENERATE, BY_CONSTRUCTION)


def collect_metrics(experiments: list[str], *, alpha: float, min_pairs: int) -> dict:
    """Metrics of every experiment, keyed by experiment, with every test judged.

    Each experiment holds the classifier's test ``accuracy``, ``support`` (one entry per support
    model), ``methods`` (per attribution method: the RC and RS summaries, ``agreement``, ``tests``
    and ``rs_by_fill``) and, when the distancing control ran, ``controls.alpha0.methods``. Every
    test gains ``p_adjusted`` and ``verdict`` (:func:`gadlib.evaluation.claims.judge`).
    """
    metrics = {}
    for name in experiments:
        paths = ExperimentPaths(name)
        classifier = json.loads(paths.classifier_summary.read_text())
        fidelity = pd.read_csv(paths.fidelity)
        summary = json.loads(paths.summary.read_text())
        supports = fidelity[fidelity["model"] > 0]
        methods = {
            method: {
                **{k: values.get(k) for k in METHOD_KEYS},
                "agreement": values["agreement"],
                "tests": values["tests"],
                "rs_by_fill": values["rs_by_fill"],
            }
            for method, values in summary["methods"].items()
        }
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
            "rc_bounded_by_construction": summary["rc_bounded_by_construction"],
            "fills": summary["fills"],
            "methods": methods,
        }
        if summary.get("quantus"):
            metrics[name]["quantus"] = summary["quantus"]
        if summary.get("controls"):
            metrics[name]["controls"] = {
                "alpha0": {
                    "methods": {
                        method: {**{k: values.get(k) for k in CONTROL_KEYS}, "tests": values["tests"]}
                        for method, values in summary["controls"]["alpha0"]["methods"].items()
                    }
                }
            }
    judge_all(metrics, alpha=alpha, min_pairs=min_pairs)
    return metrics


def judge_all(metrics: dict, *, alpha: float, min_pairs: int) -> None:
    """Correct every test of the report together and write ``p_adjusted`` and ``verdict``, in place.

    ``rs_by_fill`` of the primary fill is the ``rs_gad_vs_rest`` test itself (counted once);
    ``rc_below_1`` is "by construction" where the experiment's settings bound RC by 1.
    """
    tests, directions, constructed = [], [], []

    def add(test: dict, direction: int, by_construction: bool = False) -> None:
        tests.append(test)
        directions.append(direction)
        constructed.append(by_construction)

    for exp in metrics.values():
        for m in exp["methods"].values():
            for key, test in m["tests"].items():
                add(test, CLAIMS[key].direction, key == "rc_below_1" and exp["rc_bounded_by_construction"])
            m["rs_by_fill"][exp["fills"][0]] = m["tests"]["rs_gad_vs_rest"]
            for fill, test in m["rs_by_fill"].items():
                if fill != exp["fills"][0]:
                    add(test, CLAIMS["rs_gad_vs_rest"].direction)
        for m in exp.get("controls", {}).get("alpha0", {}).get("methods", {}).values():
            for key, test in m["tests"].items():
                add(test, -1 if key == EMPTY_RATE else CONTROL_CLAIMS[key].direction)
    judge(tests, directions, alpha=alpha, min_pairs=min_pairs, by_construction=constructed)
    for exp in metrics.values():
        for m in exp["methods"].values():  # in the order of the fills, the main one first
            tests_by_fill = m["rs_by_fill"]
            m["rs_by_fill"] = {
                fill: {"rs_gad_beats_rest": tests_by_fill[fill]["share_positive"], **tests_by_fill[fill]}
                for fill in exp["fills"]
            }


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value, digits: int = 3) -> str:
    if _missing(value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _p(value) -> str:
    return "—" if _missing(value) else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _ci(test: dict) -> str:
    low, high = test.get("ci95") or (None, None)
    return f"[{_fmt(low)}, {_fmt(high)}]"


def _share(test: dict, direction: int) -> float:
    """Share of the pairs that go the paper's way."""
    return test["share_positive"] if direction > 0 else test["share_negative"]


def claim_sentence(key: str, claim_text: str, direction: int, results: list[tuple[str, str, dict]]) -> str:
    """One line on one claim across experiments and methods: the verdicts, with the evidence of the
    significant ones (the table of tests has every number). ``results`` holds (experiment, method,
    judged test) triples."""
    parts = []
    for verdict in VERDICT_ORDER:
        hits = [(e, m, t) for e, m, t in results if t["verdict"] == verdict]
        if not hits:
            continue
        if verdict == BY_CONSTRUCTION:
            parts.append(f"**holds by construction** under these settings (all {len(hits)} method × experiment)")
        elif verdict in (SUPPORTED, CONTRADICTED):
            details = ", ".join(
                f"{m} in {e} ({_share(t, direction):.0%} of {t['n']} images go the paper's way, median "
                f"difference {_fmt(t['median_diff'])} {_ci(t)}, adjusted p {_p(t['p_adjusted'])})"
                for e, m, t in hits
            )
            parts.append(f"**{verdict}** for {details}")
        else:
            names = ", ".join(f"{m} in {e}" + (f" (n = {t['n']})" if verdict == DEGENERATE else "") for e, m, t in hits)
            share = "every one" if len(hits) == len(results) else f"{len(hits)} of {len(results)}"
            parts.append(f"**{verdict}** for {share}: {names}")
    return f"- **{claim_text}**: " + "; ".join(parts) + "."


def render_report(
    metrics: dict, params: Params, figures: dict[str, str], timings: dict | None = None, run_notes: list[str] = ()
) -> str:
    """The Markdown report.

    Parameters
    ----------
    metrics : from :func:`collect_metrics`
    params : the validated params.yaml
    figures : figure title -> path relative to reports/
    timings : from :func:`gadlib.pipeline.timings.collect_timings`, or None
    run_notes : extra lines for the "This run" section (sizes, budget reductions)
    """
    stats = params.statistics
    k = len(params.support.alphas)
    lines = [
        "# GAD: results of this run",
        "",
        "Produced by the `figures` stage from the pipeline's outputs (`dvc repro`). Every number below "
        "is read from `reports/metrics.json` and the per-image tables in `reports/experiments/<experiment>/`.",
        "",
        "## What this run supports",
        "",
        f"Each claim is a paired comparison per image: n is the number of images where both values exist, "
        f"the effect is the median paired difference with a 95% bootstrap CI, p is a two-sided Wilcoxon "
        f"signed-rank test, corrected across all {_count_tests(metrics)} tests of this report "
        f"(Benjamini-Hochberg). Verdicts: *supported* (adjusted p < {stats.alpha} in the paper's direction), "
        f"*not significant*, *contradicted* (significant the other way), *degenerate* (fewer than "
        f"{stats.min_pairs} images with both values, e.g. mostly empty GAD maps), *by construction* (holds "
        f"for every input under these settings).",
        "",
    ]
    for key, claim in CLAIMS.items():
        results = [
            (e, m, v["tests"][key])
            for e, exp in metrics.items()
            for m, v in exp["methods"].items()
            if key in v["tests"]
        ]
        if results:
            lines.append(claim_sentence(key, claim.sentence, claim.direction, results))
    lines += _rc_context(metrics)
    lines += _fill_sentence(metrics)
    lines += _control_sentence(metrics)
    lines += _agreement_sentence(metrics, params)
    lines += [
        "",
        "## The tests",
        "",
        "| experiment | method | claim | n | median difference [95% CI] | adjusted p | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for e, exp in metrics.items():
        for m, v in exp["methods"].items():
            for key, t in v["tests"].items():
                lines.append(
                    f"| {e} | {m} | {key} | {t['n']} | {_fmt(t['median_diff'])} {_ci(t)} | "
                    f"{_p(t['p_adjusted'])} | {t['verdict']} |"
                )
            for fill, t in v["rs_by_fill"].items():
                if fill != exp["fills"][0]:
                    lines.append(
                        f"| {e} | {m} | rs_gad_vs_rest, {fill} fill | {t['n']} | "
                        f"{_fmt(t['median_diff'])} {_ci(t)} | {_p(t['p_adjusted'])} | {t['verdict']} |"
                    )
            for key, t in (
                exp.get("controls", {}).get("alpha0", {}).get("methods", {}).get(m, {}).get("tests", {}).items()
            ):
                effect = f"{_fmt(t['diff'])} {_ci(t)}" if key == EMPTY_RATE else f"{_fmt(t['median_diff'])} {_ci(t)}"
                lines.append(f"| {e} | {m} | {key} | {t['n']} | {effect} | {_p(t['p_adjusted'])} | {t['verdict']} |")
    lines += [
        "",
        "RC and RS per method (medians over images; RS in logit units per occluded pixel):",
        "",
        "| experiment | method | images | GAD empty | RC median | RC median, non-empty | RS GAD | RS rest | "
        "RS random | RS top-n |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e, exp in metrics.items():
        for m, v in exp["methods"].items():
            lines.append(
                f"| {e} | {m} | {v['n_images']} | {_fmt(v['gad_empty'])} | {_fmt(v['rc_median'])} | "
                f"{_fmt(v['rc_median_nonempty'])} | {_fmt(v['rs_gad_mean'])} | {_fmt(v['rs_rest_mean'])} | "
                f"{_fmt(v['rs_random_mean'])} | {_fmt(v['rs_top_n_mean'])} |"
            )
    lines += _standard_metric_lines(metrics)
    lines += ["", "## This run", ""]
    for name, exp in ((n, params.experiments[n]) for n in metrics if n in params.experiments):
        classes = exp.classes if isinstance(exp.classes, str) else ", ".join(map(str, exp.classes))
        lines.append(
            f"- **{name}**: {exp.dataset} ({classes}), {exp.architecture} at {exp.image_size} px, strategy "
            f"{exp.strategy}; classifier test accuracy {_fmt(metrics[name]['accuracy'])}."
        )
    support = params.support
    lines.append(
        f"- K = {k} support models, α schedule {support.alphas} × {support.alpha_scale} (in units of each "
        f"logit's std), {support.epochs} epochs, Adam lr {support.lr}, {support.init} initialisation."
    )
    lines += [f"- {note}" for note in run_notes]
    lines += _timing_lines(timings)
    lines += [
        "",
        "## Support models",
        "",
        "Each support model regresses the distanced logits (set `alpha0`: the original logits, the control "
        "without distancing). Accuracy on the held-out test images, argmax agreement with the original "
        "classifier, achieved against target mean margin.",
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
    lines += _choices(params)
    return "\n".join(lines) + "\n"


def _standard_metric_lines(metrics: dict) -> list[str]:
    """Quantus's metrics of the original and the GAD maps: medians [quartiles] over the images."""
    found = {e: exp["quantus"] for e, exp in metrics.items() if exp.get("quantus")}
    if not found:
        return []
    directions = next(iter(found.values()))["direction"]
    lines = [
        "",
        f"Standard metrics (Quantus {next(iter(found.values()))['quantus_version']}) of the original and "
        "the GAD maps, medians [quartiles] over the first explained images (n images with a value; an empty "
        "map has none):",
        "",
    ]
    lines += [f"- **{metric}**: {text}." for metric, text in directions.items()]
    lines += [
        "",
        "Sparseness and Complexity reward any map that keeps fewer pixels: a GAD map is zero outside its "
        "consistency mask (at most the original's top-q pixels), so these two favour it whatever its quality; "
        "Pixel-Flipping and the randomisation test are the informative ones here.",
    ]
    lines += ["", "| experiment | method | metric | original | GAD | n |", "|---|---|---|---|---|---|"]
    for e, quantus in found.items():
        for method, maps in quantus.items():
            if method in ("direction", "quantus_version"):
                continue
            for metric in directions:
                cells = [maps.get(which, {}).get(metric) for which in ("original", "gad")]
                text = [f"{_fmt(c['median'])} [{_fmt(c['q25'])}, {_fmt(c['q75'])}]" if c else "n/a" for c in cells]
                count = cells[1]["n"] if cells[1] else 0
                lines.append(f"| {e} | {method} | {metric} | {text[0]} | {text[1]} | {count} |")
    return lines


def _timing_lines(timings: dict | None) -> list[str]:
    """Where the time went: seconds per stage and experiment (stage start included), and the total."""
    if not timings:
        return []
    names = list(next(iter(timings["stages"].values())))
    lines = [
        "",
        f"Where the time went (seconds; each stage's wall time, kernel start included; total "
        f"{timings['total_seconds']:.0f} s = {timings['total_seconds'] / 60:.1f} min):",
        "",
        "| stage | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for stage, by_experiment in timings["stages"].items():
        lines.append(f"| {stage} | " + " | ".join(_fmt(by_experiment[n], 3) for n in names) + " |")
    if timings.get("figures") is not None:
        lines.append(
            f"| figures (all experiments, up to this report) | {timings['figures']:.0f} |" + " |" * (len(names) - 1)
        )
    return lines


def _count_tests(metrics: dict) -> int:
    return sum(1 for exp in metrics.values() for _, t in _all_tests(exp) if t.get("p_adjusted") is not None)


def _all_tests(exp: dict):
    for m, v in exp["methods"].items():
        yield from ((m, t) for t in v["tests"].values())
        yield from ((m, t) for fill, t in v["rs_by_fill"].items() if fill != exp["fills"][0])
    for m, v in exp.get("controls", {}).get("alpha0", {}).get("methods", {}).items():
        yield from ((m, t) for t in v["tests"].values())


def _rc_context(metrics: dict) -> list[str]:
    parts = [
        f"{m} in {e}: {_fmt(v['rc_median_nonempty'])} ({v['gad_empty']:.0%} of GAD maps empty)"
        for e, exp in metrics.items()
        for m, v in exp["methods"].items()
        if not _missing(v["gad_empty"])
    ]
    return [f"- **How much smaller** (median RC over images with a non-empty GAD map): {'; '.join(parts)}."]


def _fill_sentence(metrics: dict) -> list[str]:
    changed = []
    for e, exp in metrics.items():
        for m, v in exp["methods"].items():
            verdicts = {fill: t["verdict"] for fill, t in v["rs_by_fill"].items()}
            if len(set(verdicts.values())) > 1:
                changed.append(f"{m} in {e} ({', '.join(f'{f}: {x}' for f, x in verdicts.items())})")
    fills = next(iter(metrics.values()))["fills"]
    if len(fills) < 2:
        return []
    if not changed:
        return [
            f"- **Occlusion fill**: the verdict on RS(GAD) > RS(rest) is the same under the {', '.join(fills)} "
            f"fills for every method and experiment."
        ]
    return [f"- **Occlusion fill**: the verdict on RS(GAD) > RS(rest) depends on the fill for {'; '.join(changed)}."]


def _control_sentence(metrics: dict) -> list[str]:
    differs, same = [], []
    for e, exp in metrics.items():
        for m, v in exp.get("controls", {}).get("alpha0", {}).get("methods", {}).items():
            significant = [
                f"{k}: {t['verdict']}" for k, t in v["tests"].items() if t["verdict"] in (SUPPORTED, CONTRADICTED)
            ]
            (differs if significant else same).append(
                f"{m} in {e}" + (f" ({', '.join(significant)})" if significant else "")
            )
    if not differs and not same:
        return []
    text = (
        "- **Distancing itself** (GAD against the same support training with α = 0, i.e. plain ensembling of "
        "K + 1 models): "
    )
    if differs:
        text += f"makes a measurable difference for {'; '.join(differs)}"
        text += f"; no measurable difference for {'; '.join(same)}." if same else "."
    else:
        text += f"no measurable difference on RS, compactness or empty maps for any method ({'; '.join(same)})."
    return [text]


def _agreement_sentence(metrics: dict, params: Params) -> list[str]:
    parts = []
    for e, exp in metrics.items():
        for m, v in exp["methods"].items():
            observed, independent = v["agreement"]["observed"][-1], v["agreement"]["independent"][-1]
            parts.append(f"{m} in {e}: {observed:.2%} of pixels (independent maps: {independent:.1e})")
    return [
        f"- **Agreement of the K + 1 = {len(params.support.alphas) + 1} maps** (pixels kept by every map, "
        f"i.e. GAD's pixels, before the evaluation's threshold): {'; '.join(parts)}."
    ]


def _choices(params: Params) -> list[str]:
    support, attribution, regions, sens = params.support, params.attribution, params.regions, params.sensitivity
    choices = {
        "α schedule (× std of each logit)": f"{support.alphas} × {support.alpha_scale}",
        "support initialisation": support.init,
        "support loss / optimiser": f"MSE on the logits, Adam lr {support.lr}, {support.epochs} epochs",
        "distancing control": "a second support set with α = 0" if support.alpha0_control else "off",
        "per-pixel importance": attribution.importance,
        "binarisation for fusion": _threshold(attribution),
        "consistency": "kept in every map"
        if attribution.min_agreement is None
        else f"kept in at least {attribution.min_agreement} maps",
        "binarisation for evaluation": _threshold(regions),
        "grouping": f"dilation {regions.dilation} px, 8-connected, min {regions.min_pixels} px",
        "occlusion fill / score": f"{sens.fill} (also {', '.join(sens.other_fills) or 'none'}) / {sens.score}",
        "random controls": f"on-object blobs; {params.statistics.random_subset_draws} random-subset draws",
    }
    return [
        "## Reconstruction choices in force",
        "",
        "The paper's full text is not available to this project; these are its documented choices "
        "(`docs/method.md`), as set in params.yaml for this run.",
        "",
        "| choice | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in choices.items()),
    ]


def _threshold(section) -> str:
    if section.threshold_mode == "quantile":
        return f"top {100 * (1 - section.q):.0f}% of pixels (q = {section.q})"
    return f"pixels ≥ {section.tau} × max"
