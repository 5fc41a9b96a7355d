"""The paper's open questions (the effect of α, multi-class GAD, GAD against SmoothGrad) and the size of
the support models' training set, as DVC experiments.

``python -m tools.open_questions run`` (``make open-questions``) queues one DVC experiment per entry
of ``open_questions.yaml`` (``dvc exp run --queue -S ...``), runs the queue (``dvc queue start``) and waits;
``collect`` then writes ``reports/open_questions.md`` and its figures from the finished experiments' Git refs.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
import yaml
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gadlib import plots as plotting
from gadlib.common.atomic import write_text
from gadlib.project.params import load_params

ROOT = Path(__file__).resolve().parents[1]  # the project folder: tools/ lives in it
REPORTS_DIR = ROOT / "reports"

PLAN_FILE = ROOT / "open_questions.yaml"
OUT_DIR = REPORTS_DIR / "open_questions"
REPORT = REPORTS_DIR / "open_questions.md"
# The dvc beside this interpreter (the project's venv), else the one on PATH.
DVC = str(Path(sys.executable).with_name("dvc")) if Path(sys.executable).with_name("dvc").exists() else "dvc"
# The α-sweep table's columns from each run's metrics.json (gadlib.evaluation.table.summarize).
SWEEP_KEYS = ("rc_median_nonempty", "gad_empty", "rs_gad_mean", "rs_rest_mean", "rs_gad_beats_rest")
FIDELITY_COLUMNS = ["experiment", "support_set", "model", "alpha", "accuracy", "agreement", "margin", "target_margin"]
# support_size.csv's columns as the report shows them
SUPPORT_SIZE_COLUMNS = {
    "images_per_class": "images per class",
    "experiment": "experiment",
    "method": "method",
    "gad_empty": "GAD empty",
    "rc_median_nonempty": "RC median (non-empty)",
    "rs_diff": "RS(GAD) − RS(rest), median [95% CI]",
    "rs_verdict": "verdict",
    "n": "n",
    "support_agreement": "support agreement",
    "margin_reached": "margin reached",
    "support_train_seconds": "support training s",
}
# what a section says when none of its experiments has finished in this repository
NOT_FINISHED = {
    "alpha": "No α-sweep experiment has finished yet.",
    "multiclass": "The multi-class experiment has not finished yet.",
    "smoothgrad": "The SmoothGrad experiment has not finished yet.",
}
# the per-image rows of one α-sweep run, as sweep_table writes them and plot_alpha_sweep draws them
SWEEP_COLUMNS = ("scale", "method", "rc", "rs_gad", "rs_rest", "agreement")
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def override_value(value) -> str:
    """A Python value in the grammar of ``dvc exp run -S`` (Hydra's override grammar)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(override_value(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return json.dumps(value)  # null, true, false
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and text not in ("null", "true", "false"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def planned_runs(plan: dict, experiments: list[str]) -> dict[str, list[str]]:
    """DVC experiment name -> its ``-S`` overrides for each run of the plan, over a params.yaml of ``experiments``."""
    sweep, multi = plan["alpha_sweep"], plan["multiclass"]
    common = [f"~experiments.{name}" for name in experiments if name != sweep["experiment"]] + _settings(sweep)
    runs = {f"alpha-{scale:g}": common + [f"support.alpha_scale={scale!r}"] for scale in sweep["scales"]}
    runs["multiclass"] = ["~experiments", f"+experiments={override_value(multi['experiments'])}", *_settings(multi)]
    runs["smoothgrad"] = _settings(plan["smoothgrad"])
    for size in plan.get("support_size", {}).get("sizes", []):
        runs[f"support-{size}"] = [f"support.max_train_per_class={override_value(size)}"]
    return runs


def queue_and_run(runs: dict[str, list[str]], jobs: int = 1, poll_s: float = 20.0) -> None:
    """Queue every run as a DVC experiment, start the queue and wait until it is empty."""
    for name, overrides in runs.items():
        options = [arg for override in overrides for arg in ("-S", override)]
        subprocess.run([DVC, "exp", "run", "--queue", "--force", "-n", name, *options], cwd=ROOT, check=True)
    subprocess.run([DVC, "queue", "start", "--jobs", str(jobs)], cwd=ROOT, check=True)
    while re.search(r"\b(Queued|Running)\b", status := _stdout(DVC, "queue", "status", check=False)):
        time.sleep(poll_s)
    print(status)


def experiment_revisions() -> dict[str, str]:
    """Name -> Git revision of every finished DVC experiment (the newest, where a name repeats): the refs
    ``refs/exps/<baseline>/<name>``, not the queued and running ones under ``refs/exps/celery`` and ``exec``."""
    out = _stdout("git", "for-each-ref", "--sort=committerdate", "--format=%(objectname) %(refname)", "refs/exps")
    revs = {}
    for rev, ref in (line.split(" ", 1) for line in out.splitlines()):
        parts = ref.split("/")
        if len(parts) == 5 and parts[2] not in ("celery", "exec", "runs"):
            revs[parts[-1]] = rev
    return revs


def read_at(rev: str, path: str) -> str:
    """A Git-tracked file as it is in revision ``rev``."""
    return _stdout("git", "show", f"{rev}:{path}")


def read_tables(rev: str, experiments: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-image hull metrics and support fidelity of some experiments, at revision ``rev``."""
    return _tables_at(rev, experiments, "hull_metrics.csv"), _tables_at(rev, experiments, "fidelity.csv")


def sweep_table(hull: pd.DataFrame, fidelity: pd.DataFrame, scale: float) -> pd.DataFrame:
    """Per-image rows of one α-sweep run: scale, method, rc, rs_gad, rs_rest, agreement."""
    wide = hull.pivot_table(index=["method", "image"], columns="region_set", values="rs", dropna=False)
    rc = hull[hull["region_set"] == "gad"].set_index(["method", "image"])["rc"]
    table = pd.DataFrame({"rc": rc, "rs_gad": wide["gad"], "rs_rest": wide["rest"]}).reset_index()
    supports = fidelity[fidelity["model"] > 0]
    table["agreement"] = supports["agreement"].mean()
    table["agreement_min"] = supports["agreement"].min()
    table.insert(0, "scale", scale)
    return table


def collect(plan: dict, revs: dict[str, str]) -> str:
    """Write the open-questions tables, figures and report from the finished DVC experiments."""
    blocks = [
        "# GAD: the paper's open questions",
        "Each section comes from DVC experiments queued by `make open-questions` "
        "(`open_questions.yaml`); the per-image tables are in `reports/open_questions/`.",
        "## 1. The effect of α",
    ]
    sweep, tables, summary = plan["alpha_sweep"], [], []
    finished = {scale: revs[f"alpha-{scale:g}"] for scale in sweep["scales"] if f"alpha-{scale:g}" in revs}
    for scale, rev in finished.items():
        table = sweep_table(*read_tables(rev, [sweep["experiment"]]), scale)
        tables.append(table)
        # the run's own summary (gadlib.evaluation.table.summarize, in its metrics.json), not a recount
        methods = json.loads(read_at(rev, "reports/metrics.json"))[sweep["experiment"]]["methods"]
        # metrics.json keeps no count of the images with both RS defined: taken from the table
        pairs = table.dropna(subset=["rs_gad", "rs_rest"]).groupby("method").size()
        agreement = {"agreement_mean": table["agreement"].iloc[0], "agreement_min": table["agreement_min"].iloc[0]}
        for method, m in sorted(methods.items()):
            test = m.get("tests", {}).get("rs_gad_vs_rest", {})
            row = {
                "scale": scale,
                "method": method,
                **{key: m.get(key) for key in SWEEP_KEYS},
                "RS(GAD) > RS(rest)": test.get("verdict"),
            }
            summary.append({**row, "n_rs_pairs": int(pairs.get(method, 0)), **agreement})
    if tables:
        table = pd.concat(tables, ignore_index=True)
        write_text(OUT_DIR / "alpha_sweep.csv", table.to_csv(index=False))
        blocks += [
            f"Experiment `{sweep['experiment']}`; the α schedule {sweep['scales']} × the default "
            "schedule. Agreement = argmax agreement of the support models with the original "
            "(mean and lowest over the K models).",
            pd.DataFrame(summary).to_markdown(index=False, floatfmt=".3g"),
            _figure(plot_alpha_sweep(table), "alpha_sweep.png", "α sweep"),
        ]
    else:
        blocks.append(NOT_FINISHED["alpha"])
    blocks.append("## 2. Multi-class GAD: One vs. All and Split output space")
    if "multiclass" in revs:
        hull, fidelity = read_tables(revs["multiclass"], list(plan["multiclass"]["experiments"]))
        write_text(OUT_DIR / "multiclass_hull_metrics.csv", hull.to_csv(index=False))
        write_text(OUT_DIR / "multiclass_fidelity.csv", fidelity.to_csv(index=False))
        blocks += [
            _methods_table(json.loads(read_at(revs["multiclass"], "reports/metrics.json"))),
            fidelity[FIDELITY_COLUMNS].to_markdown(index=False, floatfmt=".3g"),
            _figure(plotting.plot_rc_distributions(hull), "multiclass_rc.png", "RC"),
            _figure(plotting.plot_rs_comparison(hull), "multiclass_rs.png", "RS"),
        ]
    else:
        blocks.append(NOT_FINISHED["multiclass"])
    blocks.append("## 3. GAD against SmoothGrad")
    if "smoothgrad" in revs:
        metrics = json.loads(read_at(revs["smoothgrad"], "reports/metrics.json"))
        hull = _tables_at(revs["smoothgrad"], list(metrics), "hull_metrics.csv")
        write_text(OUT_DIR / "smoothgrad_hull_metrics.csv", hull.to_csv(index=False))
        timing = _tables_at(revs["smoothgrad"], list(metrics), "attribution_cost.csv")
        cost = {}  # seconds per image of each variant: the plain method, then with GAD
        for method, row in timing.groupby("method")[["plain_seconds_per_image", "seconds_per_image"]].mean().iterrows():
            cost[method] = row["plain_seconds_per_image"]
            cost[f"GAD({method})"] = row["seconds_per_image"]
        seconds = ", ".join(f"{m} {s:.3g} s" for m, s in cost.items())
        blocks += [
            _methods_table(metrics),
            f"Cost, seconds per image on the machine that ran the experiment (attribution stage): {seconds}.",
            _figure(plot_gad_vs_smoothgrad(hull, cost=cost), "smoothgrad.png", "GAD against SmoothGrad"),
        ]
    else:
        blocks.append(NOT_FINISHED["smoothgrad"])
    blocks += support_size_blocks(plan, revs)
    text = "\n\n".join(blocks) + "\n\n"
    text = keep_earlier_sections(text, REPORT.read_text() if REPORT.is_file() else "")
    write_text(REPORT, text)
    return text


def keep_earlier_sections(text: str, earlier: str) -> str:
    """``text`` with each section that has no finished experiment here taken from ``earlier`` instead.

    DVC keeps finished experiments as local Git refs: a fresh clone, or a checkout whose experiments were
    removed, holds none of them. A section whose runs are absent then keeps what the collect that had
    them wrote (its tables and figures in ``reports/open_questions/`` are left as they are), rather than
    turning into "not finished yet"; a later collect with the runs present rewrites it."""
    earlier_sections = dict(_sections(earlier))
    kept = []
    for heading, body in _sections(text):
        previous = earlier_sections.get(heading, "")
        if body.strip() in NOT_FINISHED.values() and previous.strip() and previous.strip() not in NOT_FINISHED.values():
            print(f"kept from the earlier report (no finished experiment here): {heading.strip()}")
            body = previous
        kept.append(heading + body)
    return "".join(kept)


def _sections(text: str) -> list[tuple[str, str]]:
    """Markdown split at its ``## `` headings: (heading line, the body up to the next one); the part before
    the first heading has the heading ''."""
    parts = re.split(r"(?m)^(## .*\n)", text)
    return [("", parts[0]), *zip(parts[1::2], parts[2::2], strict=True)]


def support_size_blocks(plan: dict, revs: dict[str, str], baseline: str = "HEAD") -> list[str]:
    """The section on the support models' training-set size: the default run (``baseline``) and one
    DVC experiment per other size, side by side (RC, empty maps, RS against the rest, fidelity, time)."""
    sizes = plan.get("support_size", {}).get("sizes", [])
    if not sizes:
        return []
    default = yaml.safe_load(read_at(baseline, "params.yaml"))["support"]["max_train_per_class"]
    runs = {default: baseline} | {size: revs[f"support-{size}"] for size in sizes if f"support-{size}" in revs}
    rows = []
    for size, rev in sorted(runs.items(), key=lambda item: (item[0] is None, item[0] or 0)):
        metrics = json.loads(read_at(rev, "reports/metrics.json"))
        fidelity = _tables_at(rev, list(metrics), "fidelity.csv")
        for experiment, exp in metrics.items():
            rows_of_experiment = fidelity[fidelity["experiment"] == experiment]
            supports = rows_of_experiment[rows_of_experiment["model"] > 0]
            gad = supports[supports["support_set"] != "alpha0"]
            original_margin = rows_of_experiment.loc[rows_of_experiment["model"] == 0, "margin"].iloc[0]
            # the share of the intended margin gain reached (1 = the classes moved apart by the full α)
            gain_reached = (gad["margin"] - original_margin) / (gad["target_margin"] - original_margin)
            for method, m in exp["methods"].items():
                test = m["tests"]["rs_gad_vs_rest"]
                rows.append(
                    {
                        "images_per_class": size,
                        "experiment": experiment,
                        "method": method,
                        "gad_empty": m["gad_empty"],
                        "rc_median_nonempty": m["rc_median_nonempty"],
                        "rs_diff_median": test["median_diff"] if test["n"] else None,
                        "rs_diff_ci_low": test["ci95"][0] if test["n"] else None,
                        "rs_diff_ci_high": test["ci95"][1] if test["n"] else None,
                        "rs_verdict": test["verdict"],
                        "n": test["n"],
                        "support_agreement": gad["agreement"].mean(),
                        "margin_reached": gain_reached.mean(),
                        "support_train_seconds": supports.groupby("support_set")["train_seconds"].first().sum(),
                    }
                )
    table = pd.DataFrame(rows)
    # a size whose experiment this repository does not hold (a fresh clone) keeps its committed rows
    earlier = OUT_DIR / "support_size.csv"
    absent = [size for size in sizes if size not in runs]
    if absent and earlier.is_file():
        previous = pd.read_csv(earlier)
        kept = previous[previous["images_per_class"].isin(absent)]
        if len(kept):
            kept_sizes = sorted(set(kept["images_per_class"]))
            print(f"support sizes kept from the committed table (no finished experiment here): {kept_sizes}")
            table = pd.concat([table, kept], ignore_index=True).sort_values("images_per_class", kind="stable")
    write_text(OUT_DIR / "support_size.csv", table.to_csv(index=False))
    shown_sizes = sorted({int(size) for size in table["images_per_class"].dropna()} - {default})
    not_run = [size for size in sizes if size not in shown_sizes]
    shown = table.assign(
        rs_diff=[
            "n/a" if pd.isna(median) else f"{median:.3g} [{low:.3g}, {high:.3g}]"
            for median, low, high in table[["rs_diff_median", "rs_diff_ci_low", "rs_diff_ci_high"]].itertuples(
                index=False
            )
        ],
        # a run whose table predates the column has no per-model margins to compute it from
        margin_reached=["not recorded" if pd.isna(value) else f"{value:.3g}" for value in table["margin_reached"]],
    )[list(SUPPORT_SIZE_COLUMNS)].rename(columns=SUPPORT_SIZE_COLUMNS)
    return [
        "## 4. How many training images the support models regress",
        f"The default (`support.max_train_per_class: {default}`, the committed run) against "
        f"{', '.join(str(s) for s in shown_sizes) or 'no other size'} images per class"
        + (f" ({', '.join(str(s) for s in not_run)}: planned, not run yet)" if not_run else "")
        + "; everything else as in params.yaml. "
        "Margin reached = the share of the intended margin gain the GAD support models reach on the test "
        "images, (margin − original's) / (target − original's), mean over the K models; "
        "support training s = the stage's training time of both support sets (GAD and α = 0).",
        shown.to_markdown(index=False, floatfmt=".3g"),
    ]


def plot_alpha_sweep(sweep: pd.DataFrame, axes: Sequence[Axes] | None = None) -> Figure:
    """RC, RS (gad vs rest) and support agreement against the α schedule multiplier.

    Parameters
    ----------
    sweep : per-image rows with columns scale (α schedule multiplier), method, rc, rs_gad, rs_rest,
        agreement (mean over the run's support models), of one experiment.
    axes : three Axes; default a new 1 x 3 figure.

    Returns
    -------
    The Figure: per method, the median over images (line) and interquartile range (band), NaN left
    out; RS(gad) solid, RS(rest) dashed in the method's colour.
    """
    plotting.check_table(sweep, SWEEP_COLUMNS, "sweep")
    if "experiment" in sweep.columns and sweep["experiment"].nunique(dropna=False) > 1:
        raise ValueError(f"sweep mixes experiments {list(sweep['experiment'].unique())}; plot one at a time")
    fig, panels = plotting.panel_axes(axes, [4.4] * 3, 3.8)
    data = sweep.astype({column: float for column in SWEEP_COLUMNS if column != "method"})
    # the median line; errorbar ("pi", 50) is the band from the 25th to the 75th percentile
    line = plotting.line_kws("scale", "method", data, estimator="median", errorbar=("pi", 50))
    sns.lineplot(data, y="rc", ax=panels[0], legend=False, **line)
    plotting.solid_and_dashed(
        panels[1], data, {"rs_gad": "GAD regions", "rs_rest": "rest of original"}, "regions", line
    )
    sns.lineplot(data, x="scale", y="agreement", color="k", marker="o", estimator="median", errorbar=None, ax=panels[2])
    panels[0].axhline(1.0, color="black", linestyle=":", linewidth=1.0, zorder=0)
    panels[0].set(ylabel="RC (median, IQR band)", title="Relative complexity vs α")
    panels[1].set(ylabel="RS (median, IQR band)", title="Occlusion sensitivity vs α")
    panels[2].set(ylabel="agreement with original", title="Support-model agreement vs α")
    plotting.finish_line_panels(fig, panels, "α schedule multiplier")
    scales = np.sort(data["scale"].unique())
    if plotting.value_spread(scales) >= 8:  # doubling sweeps read evenly in log2
        for ax in panels:
            ax.set_xscale("log", base=2)
            ax.set_xticks(scales, [f"{v:g}" for v in scales])
    return fig


def plot_gad_vs_smoothgrad(
    table: pd.DataFrame,
    cost: Mapping[str, float] | pd.Series | None = None,
    axes: Sequence[Axes] | None = None,
    variants: Mapping[str, tuple[str, str]] | None = None,
    baseline: str | None = None,
) -> Figure:
    """Compare noise-reduction variants (e.g. Saliency, SmoothGrad, GAD) by area, RS and cost.

    Parameters
    ----------
    table : per-image tidy table with columns experiment, image, method, region_set, complexity, rs.
    cost : seconds per image by variant label, drawn in this order as a third panel; default none.
    axes : two Axes, or three with ``cost``; default a new figure.
    variants : display label -> (method, region_set) of each variant's regions, in order; default
        ``method`` -> (method, "original") and ``GAD(method)`` -> (method, "gad") where present.
    baseline : label of the variant complexity is relative to; default the first variant.

    Returns
    -------
    The Figure, experiments as hue: per image, complexity over the baseline's (zero baseline: NaN)
    with, above each box, the share of images below 1 and their number; each variant's RS; the cost.
    """
    plotting.check_table(table, (*plotting.TIDY_COLUMNS, "complexity", "rs"), "table", unique=True)
    by_pair = dict(list(table.groupby(["method", "region_set"], sort=False)))
    if variants is None:
        variants = {
            label: (method, region_set)
            for method in pd.unique(table["method"])
            for label, region_set in ((str(method), "original"), (f"GAD({method})", "gad"))
            if (method, region_set) in by_pair
        }
    labels = list(variants)
    if not labels:
        raise ValueError("no variants: the table has no 'original' or 'gad' rows")
    baseline = labels[0] if baseline is None else baseline
    if baseline not in labels:
        raise ValueError(f"baseline {baseline!r} is not one of the variants {labels}")
    if missing := [label for label, pair in variants.items() if tuple(pair) not in by_pair]:
        raise ValueError(f"variants {missing} select (method, region_set) pairs with no rows in the table")
    parts = [by_pair[tuple(pair)].assign(variant=label) for label, pair in variants.items()]
    data = pd.concat(parts, ignore_index=True).astype({"complexity": float, "rs": float})
    base = data[data["variant"] == baseline].set_index(["experiment", "image"])["complexity"].rename("base")
    data = data.join(base.where(base > 0), on=["experiment", "image"])
    data["ratio"] = data["complexity"] / data["base"]
    colors = plotting.palette(pd.unique(data["experiment"]))  # one colour per experiment in both panels

    box_width = max(5.0, 0.45 * len(labels) * len(colors) + 2.0)
    fig, panels = plotting.panel_axes(axes, [box_width, box_width, 4.5][: 2 if cost is None else 3], 4.2)
    panels[0].set(xlabel="variant", ylabel=f"complexity / complexity({baseline})")
    panels[0].set_title(f"Area relative to {baseline} (lower = smaller)", fontsize=10)
    ratios = data[data["variant"] != baseline]
    share = ("<", 1.0, f"share of images smaller than {baseline}")
    nan = f"NaN ratios (zero {baseline})"
    plotting.box_strip(
        panels[0], ratios, "variant", "ratio", "experiment", colors=colors, legend=False, nan=nan, share=share
    )
    panels[1].set(xlabel="variant", ylabel="RS = score drop per occluded pixel")
    panels[1].set_title("Occlusion sensitivity of each variant's regions", fontsize=10)
    plotting.box_strip(panels[1], data, "variant", "rs", "experiment", colors=colors, nan="NaN RS")
    if cost is not None:
        seconds = pd.Series(cost, dtype=float)
        if seconds.empty or not np.isfinite(seconds).all() or (seconds < 0).any():
            raise ValueError(f"cost must hold finite non-negative seconds per variant, or be None; got {dict(seconds)}")
        sns.barplot(x=seconds.index.astype(str), y=seconds.to_numpy(), color=plotting.OKABE_ITO[2], ax=panels[2])
        panels[2].bar_label(panels[2].containers[0], labels=[f"{v:.3g}" for v in seconds], fontsize=8)
        panels[2].set(xlabel="variant", ylabel="seconds per image")
        panels[2].set_title("Cost", fontsize=10)
        plotting.slant_ticks(panels[2])
    return fig


def _settings(section: dict) -> list[str]:
    """The ``-S`` overrides of a plan section's ``set`` mapping."""
    return [f"{k}={override_value(v)}" for k, v in section.get("set", {}).items()]


def _stdout(*cmd: str, check: bool = True) -> str:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=check).stdout


def _tables_at(rev: str, experiments: list[str], file: str) -> pd.DataFrame:
    """The experiments' ``reports/experiments/<experiment>/<file>`` tables at revision ``rev``, concatenated."""
    tables = [pd.read_csv(io.StringIO(read_at(rev, f"reports/experiments/{e}/{file}"))) for e in experiments]
    return pd.concat(tables, ignore_index=True)


def _figure(fig, file: str, alt: str) -> str:
    """Save ``fig`` as ``OUT_DIR / file``; the report's Markdown that shows it."""
    plotting.save_figure(fig, OUT_DIR / file)
    return f"![{alt}](open_questions/{file})"


def _methods_table(metrics: dict) -> str:
    """Per experiment and method: the summary numbers and the verdicts of the RS claims (each run's own report)."""
    keys = ("n_images", "gad_empty", "rc_median_nonempty", "rs_gad_mean", "rs_rest_mean", "rs_gad_beats_rest")
    claims = ("rs_gad_vs_rest", "rs_gad_vs_random", "rs_gad_vs_top_n")
    rows = [
        (e, m, *(v.get(k) for k in keys), *(v.get("tests", {}).get(c, {}).get("verdict") for c in claims))
        for e, exp in metrics.items()
        for m, v in exp["methods"].items()
    ]
    return pd.DataFrame(rows, columns=["experiment", "method", *keys, *claims]).to_markdown(index=False, floatfmt=".3g")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "queue", "collect", "plan"))
    parser.add_argument("--plan", default=str(PLAN_FILE))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--only", nargs="+", metavar="RUN", help="queue only these runs (e.g. multiclass alpha-2)")
    args = parser.parse_args(argv)
    plan = yaml.safe_load(Path(args.plan).read_text())
    runs = planned_runs(plan, load_params().experiment_names)
    if args.only:
        if unknown := sorted(set(args.only) - set(runs)):
            parser.error(f"unknown run(s) {unknown}; the plan has {list(runs)}")
        runs = {name: runs[name] for name in args.only}
    if args.action == "plan":
        for name, overrides in runs.items():
            print(name, " ".join(f"-S {o!r}" for o in overrides))
        return 0
    if args.action in ("run", "queue"):
        queue_and_run(runs, jobs=args.jobs)
    if args.action in ("run", "collect"):
        print(collect(plan, experiment_revisions()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
