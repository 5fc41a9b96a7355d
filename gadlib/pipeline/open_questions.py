"""The paper's open questions as DVC experiments: the effect of α, multi-class GAD, and GAD against
SmoothGrad.

``python -m gadlib.pipeline.open_questions run`` (``make open-questions``) queues one DVC experiment per
entry of ``open_questions.yaml`` (``dvc exp run --queue -S ...``), runs the queue
(``dvc queue start``), waits, and then ``collect`` reads each finished experiment's per-image tables
from its Git ref and writes ``reports/open_questions.md`` with its figures.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from gadlib import plots as plotting
from gadlib.common.atomic import write_text
from gadlib.pipeline.params import load_params
from gadlib.pipeline.paths import REPORTS_DIR, ROOT

PLAN_FILE = ROOT / "open_questions.yaml"
OUT_DIR = REPORTS_DIR / "open_questions"
REPORT = REPORTS_DIR / "open_questions.md"
# The dvc beside this interpreter (the project's venv), else the one on PATH.
DVC = str(Path(sys.executable).with_name("dvc")) if Path(sys.executable).with_name("dvc").exists() else "dvc"
# The α-sweep table's columns from each run's metrics.json (gadlib.evaluation.table.summarize).
SWEEP_KEYS = ("rc_median", "rc_below_1", "gad_empty", "rs_gad_mean", "rs_rest_mean", "rs_gad_beats_rest")
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def override_value(value) -> str:
    """A Python value in the grammar of ``dvc exp run -S`` (Hydra's override grammar)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(override_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and text not in ("null", "true", "false"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def planned_runs(plan: dict, experiments: list[str]) -> dict[str, list[str]]:
    """DVC experiment name -> its ``-S`` overrides, for every run the plan asks for, on top of a
    params.yaml that defines ``experiments``."""
    runs: dict[str, list[str]] = {}
    sweep = plan["alpha_sweep"]
    others = [name for name in experiments if name != sweep["experiment"]]
    common = [f"~experiments.{name}" for name in others]
    common += [f"{k}={override_value(v)}" for k, v in sweep.get("set", {}).items()]
    for scale in sweep["scales"]:
        runs[f"alpha-{scale:g}"] = common + [f"support.alpha_scale={scale!r}"]
    multi = plan["multiclass"]
    runs["multiclass"] = ["~experiments", f"+experiments={override_value(multi['experiments'])}"] + [
        f"{k}={override_value(v)}" for k, v in multi.get("set", {}).items()
    ]
    runs["smoothgrad"] = [f"{k}={override_value(v)}" for k, v in plan["smoothgrad"].get("set", {}).items()]
    return runs


def queue_and_run(runs: dict[str, list[str]], jobs: int = 1, poll_s: float = 20.0) -> None:
    """Queue every run as a DVC experiment, start the queue and wait until it is empty."""
    for name, overrides in runs.items():
        cmd = [DVC, "exp", "run", "--queue", "--force", "-n", name]
        for override in overrides:
            cmd += ["-S", override]
        subprocess.run(cmd, cwd=ROOT, check=True)
    subprocess.run([DVC, "queue", "start", "--jobs", str(jobs)], cwd=ROOT, check=True)
    while True:
        status = subprocess.run([DVC, "queue", "status"], cwd=ROOT, capture_output=True, text=True).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(poll_s)
    print(status)


def experiment_revisions() -> dict[str, str]:
    """Name -> Git revision of every finished DVC experiment (the newest, where a name repeats).

    DVC keeps a finished experiment as the ref ``refs/exps/<baseline>/<name>``; queued and running
    ones live under ``refs/exps/celery`` and ``refs/exps/exec`` and are left out.
    """
    out = subprocess.run(
        ["git", "for-each-ref", "--sort=committerdate", "--format=%(objectname) %(refname)", "refs/exps"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    revs = {}
    for line in out.splitlines():
        rev, ref = line.split(" ", 1)
        parts = ref.split("/")
        if len(parts) == 5 and parts[2] not in ("celery", "exec", "runs"):
            revs[parts[-1]] = rev
    return revs


def read_at(rev: str, path: str) -> str:
    """A Git-tracked file as it is in revision ``rev``."""
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def read_tables(rev: str, experiments: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-image hull metrics and support fidelity of some experiments, at revision ``rev``."""
    hull = pd.concat(
        [pd.read_csv(io.StringIO(read_at(rev, f"reports/experiments/{e}/hull_metrics.csv"))) for e in experiments],
        ignore_index=True,
    )
    fidelity = pd.concat(
        [pd.read_csv(io.StringIO(read_at(rev, f"reports/experiments/{e}/fidelity.csv"))) for e in experiments],
        ignore_index=True,
    )
    return hull, fidelity


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
    lines = [
        "# GAD: the paper's open questions",
        "",
        "Each section comes from DVC experiments queued by `make open-questions` "
        "(`open_questions.yaml`); the per-image tables are in `reports/open_questions/`.",
        "",
    ]
    sweep = plan["alpha_sweep"]
    rows, summary = [], []
    for scale in sweep["scales"]:
        name = f"alpha-{scale:g}"
        if name in revs:
            hull, fidelity = read_tables(revs[name], [sweep["experiment"]])
            table = sweep_table(hull, fidelity, scale)
            rows.append(table)
            # the run's own summary (gadlib.evaluation.table.summarize, in its metrics.json), not a recount
            methods = json.loads(read_at(revs[name], "reports/metrics.json"))[sweep["experiment"]]["methods"]
            # metrics.json keeps no count of the images with both RS defined: taken from the table
            pairs = table.dropna(subset=["rs_gad", "rs_rest"]).groupby("method").size()
            summary += [
                {
                    "scale": scale,
                    "method": method,
                    **{key: m.get(key) for key in SWEEP_KEYS},
                    "n_rs_pairs": int(pairs.get(method, 0)),
                    "agreement_mean": table["agreement"].iloc[0],
                    "agreement_min": table["agreement_min"].iloc[0],
                }
                for method, m in sorted(methods.items())
            ]
    lines += ["## 1. The effect of α", ""]
    if rows:
        table = pd.concat(rows, ignore_index=True)
        write_text(OUT_DIR / "alpha_sweep.csv", table.to_csv(index=False))
        plotting.save_figure(plotting.plot_alpha_sweep(table), OUT_DIR / "alpha_sweep.png")
        lines += [
            f"Experiment `{sweep['experiment']}`; the α schedule {sweep['scales']} × the default "
            "schedule. Agreement = argmax agreement of the support models with the original "
            "(mean and lowest over the K models).",
            "",
            pd.DataFrame(summary).to_markdown(index=False, floatfmt=".3g"),
            "",
            "![α sweep](open_questions/alpha_sweep.png)",
            "",
        ]
    else:
        lines += ["No α-sweep experiment has finished yet.", ""]
    lines += ["## 2. Multi-class GAD: One vs. All and Split output space", ""]
    if "multiclass" in revs:
        names = list(plan["multiclass"]["experiments"])
        hull, fidelity = read_tables(revs["multiclass"], names)
        write_text(OUT_DIR / "multiclass_hull_metrics.csv", hull.to_csv(index=False))
        write_text(OUT_DIR / "multiclass_fidelity.csv", fidelity.to_csv(index=False))
        metrics = json.loads(read_at(revs["multiclass"], "reports/metrics.json"))
        plotting.save_figure(plotting.plot_rc_distributions(hull), OUT_DIR / "multiclass_rc.png")
        plotting.save_figure(plotting.plot_rs_comparison(hull), OUT_DIR / "multiclass_rs.png")
        lines += [
            _methods_table(metrics),
            "",
            _fidelity_table(fidelity),
            "",
            "![RC](open_questions/multiclass_rc.png)",
            "",
            "![RS](open_questions/multiclass_rs.png)",
            "",
        ]
    else:
        lines += ["The multi-class experiment has not finished yet.", ""]
    lines += ["## 3. GAD against SmoothGrad", ""]
    if "smoothgrad" in revs:
        metrics = json.loads(read_at(revs["smoothgrad"], "reports/metrics.json"))
        experiments = list(metrics)
        hull, _ = read_tables(revs["smoothgrad"], experiments)
        write_text(OUT_DIR / "smoothgrad_hull_metrics.csv", hull.to_csv(index=False))
        cost_file = "reports/experiments/{}/attribution_cost.csv"
        cost = pd.concat(
            [pd.read_csv(io.StringIO(read_at(revs["smoothgrad"], cost_file.format(e)))) for e in experiments],
            ignore_index=True,
        )
        per_image = cost.groupby("method")[["plain_seconds_per_image", "seconds_per_image"]].mean()
        variant_cost = {}
        for method, row in per_image.iterrows():
            variant_cost[method] = row["plain_seconds_per_image"]
            variant_cost[f"GAD({method})"] = row["seconds_per_image"]
        plotting.save_figure(plotting.plot_gad_vs_smoothgrad(hull, cost=variant_cost), OUT_DIR / "smoothgrad.png")
        lines += [
            _methods_table(metrics),
            "",
            "Cost, seconds per image on the machine that ran the experiment (attribution stage): "
            + ", ".join(f"{m} {s:.3g} s" for m, s in variant_cost.items())
            + ".",
            "",
            "![GAD against SmoothGrad](open_questions/smoothgrad.png)",
            "",
        ]
    else:
        lines += ["The SmoothGrad experiment has not finished yet.", ""]
    text = "\n".join(lines) + "\n"
    write_text(REPORT, text)
    return text


def _methods_table(metrics: dict) -> str:
    rows = [
        {
            "experiment": e,
            "method": m,
            **{
                k: v.get(k)
                for k in (
                    "n_images",
                    "rc_median",
                    "rc_below_1",
                    "rs_gad_mean",
                    "rs_rest_mean",
                    "rs_random_mean",
                    "rs_gad_beats_rest",
                )
            },
        }
        for e, exp in metrics.items()
        for m, v in exp["methods"].items()
    ]
    return pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g")


def _fidelity_table(fidelity: pd.DataFrame) -> str:
    cols = ["experiment", "support_set", "model", "alpha", "accuracy", "agreement", "margin", "target_margin"]
    return fidelity[cols].to_markdown(index=False, floatfmt=".3g")


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
        unknown = sorted(set(args.only) - set(runs))
        if unknown:
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
