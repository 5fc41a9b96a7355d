"""The numbers of README.md and docs/, rendered from the run's reports instead of typed by hand.

Generated blocks sit between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` lines (:data:`BLOCK_FILES`
says which file holds which):

- ``settings``: what the default run does where it is smaller than the paper (from params.yaml);
- ``results``: the classifiers' test accuracy (``reports/experiments/<experiment>/classifier.json``)
  and, per experiment and method, the share of empty GAD maps, the median RC of the non-empty ones
  and the verdicts of the paper's claims (``reports/metrics.json``);
- ``timings``: the pipeline's wall time per stage, summed over the experiments (``reports/timings.json``);
- ``bench``: GAD against plain Captum (``reports/bench.json`` and ``reports/gpu/bench_*.json``);
- ``support_size``: the support-set size study, one row per size (``reports/open_questions/support_size.csv``,
  written by ``python -m tools.open_questions collect``).

``python -m tools.readme`` (``make readme``) rewrites the blocks after a run; ``--check`` only
compares, and ``tests/tools/test_readme.py`` fails when the documents and the committed reports
disagree, except in the blocks of :data:`MACHINE_DEPENDENT` (timings differ from machine to machine,
so a run elsewhere must not fail the tests).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from gadlib.common.atomic import write_text
from gadlib.evaluation.claims import CLAIMS
from gadlib.project.params import Params, load_params
from tools.timings import EXPERIMENT_STAGES

ROOT = Path(__file__).resolve().parents[1]  # the project folder: tools/ lives in it

# file (relative to the project) -> the blocks it holds
BLOCK_FILES = {
    "README.md": ("settings", "results"),
    "docs/performance.md": ("timings", "bench"),
    "docs/pipeline.md": ("support_size",),
}
MACHINE_DEPENDENT = ("timings",)
# the claims the README's table shows, with their column headings (every claim is in reports/report.md)
README_CLAIMS = {
    "rc_below_1": "RC < 1",
    "rs_gad_vs_rest": "RS(GAD) > RS(rest)",
    "rs_gad_vs_random": "RS(GAD) > RS(random)",
    "rs_gad_vs_top_n": "RS(GAD) > RS(top-n)",
}
FASHION_MNIST_TRAIN_PER_CLASS = 6000
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "dogs_vs_cats": "Dogs vs. Cats", "cub200": "CUB-200-2011"}


class ReadmeError(ValueError):
    """README.md lacks a block's markers, or a report the block needs is unreadable."""


def block_pattern(name: str) -> re.Pattern:
    """The block ``name`` with its markers: group 1 the opening line, 2 the content, 3 the closing line."""
    return re.compile(rf"(<!-- {name}:begin[^>]*-->\n)(.*?)(<!-- {name}:end -->)", re.S)


def render_settings(params: Params) -> str:
    """Where the default run is smaller than the paper, read from params.yaml."""
    data, classifier, support = params.data, params.classifier, params.support
    datasets = sorted({DATASET_NAMES[e.dataset] for e in params.experiments.values()})
    sizes = sorted({e.image_size for e in params.experiments.values()})
    if data.max_train_per_class is None:
        train = "every training image of each pair (6,000 per class for Fashion-MNIST)"
    else:
        train = f"{data.max_train_per_class:,} training images per class (of {FASHION_MNIST_TRAIN_PER_CLASS:,})"
    stopping = f", early stopping after {classifier.patience} epochs without improvement" if classifier.patience else ""
    supports = (
        "every training image"
        if support.max_train_per_class is None
        else f"{support.max_train_per_class:,} training images per class"
    )
    schedule = {"one_cycle": "a one-cycle learning-rate schedule", "constant": "a constant learning rate"}
    return (
        f"**The default run** (smaller than the paper's, to fit a 2-core CPU): {' and '.join(datasets)} at "
        f"{', '.join(map(str, sizes))} px instead of the paper's photographs; the classifier trains on {train} "
        f"for up to {classifier.epochs} epochs with {schedule.get(classifier.schedule, classifier.schedule)}"
        f"{stopping}; the support models regress {supports} ({support.epochs} epochs of Adam, as in the paper); "
        f"{params.attribution.n_images} held-out test images are explained per experiment.\n"
    )


def render_results(reports: Path) -> str:
    """The classifiers' accuracy and, per experiment and method, empty maps, RC and the claims' verdicts."""
    metrics = _read_json(reports / "metrics.json")
    accuracy = []
    for experiment in metrics:
        summary = _read_json(reports / "experiments" / experiment / "classifier.json")
        classes = " vs ".join(summary.get("classes", [])) or experiment
        accuracy.append(f"{classes} {summary['accuracy']:.3f} ({summary.get('n_test', '?'):,} test images)")
    lines = [
        f"Classifier test accuracy: {'; '.join(accuracy)}.",
        "",
        "Per experiment and method: how often GAD's map is empty, the median RC of the non-empty ones, and the "
        "verdict of each claim with the share of images that go the paper's way "
        "(`reports/report.md` has every test with its effect, CI and p-value).",
        "",
        "| experiment | method | GAD map empty | median RC (non-empty) | " + " | ".join(README_CLAIMS.values()) + " |",
        "|---" * (4 + len(README_CLAIMS)) + "|",
    ]
    for experiment, exp in metrics.items():
        for method, values in exp["methods"].items():
            cells = [experiment, method, _percent(values.get("gad_empty")), _number(values.get("rc_median_nonempty"))]
            cells += [_verdict(values.get("tests", {}).get(claim), CLAIMS[claim].direction) for claim in README_CLAIMS]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_timings(reports: Path) -> str:
    """Seconds per stage, summed over the experiments, and the pipeline's total (``reports/timings.json``)."""
    path = reports / "timings.json"
    if not path.is_file():
        return "No timings yet: `make repro` writes `reports/timings.json` after `dvc repro`.\n"
    timings = _read_json(path)
    stages = timings.get("stages", {})
    lines = ["| stage | seconds (all experiments) |", "|---|---|"]
    for stage in [*EXPERIMENT_STAGES, *(s for s in stages if s not in EXPERIMENT_STAGES)]:
        known = [s for s in stages.get(stage, {}).values() if s is not None]
        lines.append(f"| `{stage}` | {sum(known):,.0f} |" if known else f"| `{stage}` | not recorded |")
    if timings.get("figures") is not None:
        lines.append(f"| `figures` | {timings['figures']:,.0f} |")
    total = timings.get("total_seconds")
    lines += ["", f"Total: **{_duration(total)}** of stage wall time (interpreter and kernel start included)."]
    return "\n".join(lines) + "\n"


def render_bench(reports: Path) -> str:
    """GAD against plain Captum per machine and method (``reports/bench.json``, ``reports/gpu/bench_*.json``)."""
    files = [reports / "bench.json", *sorted((reports / "gpu").glob("bench_*.json"))]
    lines = [
        "| machine | method | Captum img/s | GAD (K = {K}) img/s | GAD / Captum |",
        "|---|---|---|---|---|",
    ]
    k_values = set()
    for path in files:
        if not path.is_file():
            continue
        bench = _read_json(path)
        env, config = bench["environment"], bench["config"]
        k_values.add(config["K"])
        machine = (
            env.get("device_name", "GPU") if env.get("device") == "cuda" else f"{env.get('cpu_count', '?')}-core CPU"
        )
        machine += f", {config['architecture']} {config['image_size']} px"
        for row in bench.get("attribution", []):
            method = row["method"] + (f" ({config['n_steps']} steps)" if row["method"] == "IntegratedGradients" else "")
            lines.append(
                f"| {machine} | {method} | {row['captum_images_per_s']:,.1f} | {row['gad_images_per_s']:,.1f} "
                f"| {row['gad_over_captum']:.2f} |"
            )
    lines[0] = lines[0].format(K="/".join(map(str, sorted(k_values))) or "K")
    return "\n".join(lines) + "\n"


def render_support_size(reports: Path) -> str:
    """Per support-set size: training time, fidelity of the support models, and what GAD's maps do
    (``reports/open_questions/support_size.csv``, one row per size, experiment and method)."""
    path = reports / "open_questions" / "support_size.csv"
    if not path.is_file():
        return "No support-size study yet: `make open-questions` runs it.\n"
    table = pd.read_csv(path)
    lines = [
        "| images per class | support training s (both sets, all experiments) | margin reached | "
        "support agreement | GAD empty (median) | RC non-empty (median) | RS(GAD) > RS(rest) |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, rows in table.groupby("images_per_class", dropna=False, sort=True):
        seconds = rows.groupby("experiment")["support_train_seconds"].first().sum()
        verdicts = rows["rs_verdict"].value_counts()
        verdict_text = ", ".join(f"{count} {verdict}" for verdict, count in verdicts.items())
        label = "all" if pd.isna(size) else f"{int(size):,}"
        margin = rows["margin_reached"].mean()  # NaN: a run recorded before the column existed
        fidelity = f"{'not recorded' if pd.isna(margin) else f'{margin:.2f}'} | {rows['support_agreement'].mean():.3f}"
        lines.append(
            f"| {label} | {seconds:,.0f} | {fidelity} "
            f"| {_percent(rows['gad_empty'].median())} | {_number(rows['rc_median_nonempty'].median())} "
            f"| {verdict_text} (of {len(rows)}) |"
        )
    return "\n".join(lines) + "\n"


def render_blocks(root: Path = ROOT, params_file: Path | None = None) -> dict[str, str]:
    """Every generated block's content, from ``root``'s params.yaml and reports/."""
    reports = Path(root) / "reports"
    params = load_params(params_file or Path(root) / "params.yaml")
    renderers: dict[str, Callable[[], str]] = {
        "settings": lambda: render_settings(params),
        "results": lambda: render_results(reports),
        "timings": lambda: render_timings(reports),
        "bench": lambda: render_bench(reports),
        "support_size": lambda: render_support_size(reports),
    }
    return {name: render() for name, render in renderers.items()}


def replace_blocks(text: str, blocks: dict[str, str]) -> str:
    """``text`` with each block's content replaced; ReadmeError when a block's markers are missing or repeated."""
    for name, content in blocks.items():
        pattern = block_pattern(name)
        found = len(pattern.findall(text))
        if found != 1:
            raise ReadmeError(
                f"README.md has {found} '{name}' blocks; it needs exactly one, between "
                f"'<!-- {name}:begin -->' and '<!-- {name}:end -->' lines"
            )
        text = pattern.sub(lambda m, c=content: m.group(1) + c + m.group(3), text)
    return text


def current_blocks(text: str, names) -> dict[str, str]:
    """The content of each named block as it is in ``text`` (missing blocks are absent)."""
    return {name: m.group(2) for name in names if (m := block_pattern(name).search(text))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a document differs")
    args = parser.parse_args(argv)
    try:
        blocks = render_blocks()
    except (ReadmeError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = []
    for name, names in BLOCK_FILES.items():
        path = ROOT / name
        text = path.read_text(encoding="utf-8")
        try:
            updated = replace_blocks(text, {block: blocks[block] for block in names})
        except ReadmeError as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            return 2
        if args.check:
            current = current_blocks(text, names)
            checked = [b for b in names if b not in MACHINE_DEPENDENT]
            stale += [f"{name}: {b}" for b in checked if current.get(b) != blocks[b]]
        elif updated != text:
            write_text(path, updated)
            print(f"{name}: generated blocks rewritten from reports/")
    if stale:
        print(f"generated blocks differ from reports/: {stale}; run `make readme`", file=sys.stderr)
        return 1
    print("generated blocks match reports/" if args.check else "generated blocks up to date")
    return 0


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReadmeError(f"{path} does not exist; run `dvc repro` (or `make bench`) first") from None


def _missing(value) -> bool:
    return value is None or value != value  # None or NaN


def _percent(value) -> str:
    return "–" if _missing(value) else f"{value:.0%}"


def _number(value) -> str:
    return "–" if _missing(value) else f"{value:.3g}"


def _verdict(test: dict | None, direction: int) -> str:
    """'supported (65%)': the verdict and the share of images that go the paper's way."""
    if not test:
        return "–"
    share = test.get("share_positive" if direction > 0 else "share_negative")
    return test.get("verdict", "?") + ("" if _missing(share) else f" ({share:.0%})")


def _duration(seconds) -> str:
    if seconds is None:
        return "not recorded"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


if __name__ == "__main__":
    sys.exit(main())
