"""`make compare`: dvc exp show's headline numbers, one line per run and experiment, in 80 columns."""

from __future__ import annotations

import io

import pandas as pd

from gadlib.project.params import read_yaml
from tests.fixtures import ROOT
from tools import compare

PARAMS_FILE = ROOT / "params.yaml"

METHODS = ("IntegratedGradients", "Saliency")
EXPERIMENTS = ("tshirt_vs_shirt", "pullover_vs_coat")


def exp_show(runs: dict[str, dict[str, str]]) -> pd.DataFrame:
    """What `dvc exp show --csv` gives for ``runs`` (name -> changed params): metrics of every
    experiment and method, every params key, dependency columns; as read by exp_show_csv."""
    keys = sorted(compare.param_keys(read_yaml(PARAMS_FILE.read_text())))
    rows = []
    for i, (name, changed) in enumerate(runs.items()):
        row = {"Experiment": "" if name in ("workspace", "main") else name, "rev": name if i < 2 else "abc1234"}
        row |= {"typ": "baseline" if i < 2 else "branch_commit", "Created": "2026-01-01T00:00:00", "parent": ""}
        for e, experiment in enumerate(EXPERIMENTS):
            row[f"{experiment}.accuracy"] = str(0.8 + e / 100)
            row[f"{experiment}.rc_bounded_by_construction"] = "True"
            for m, method in enumerate(METHODS):
                prefix = f"{experiment}.methods.{method}"
                row |= {f"{prefix}.rc_median": str(0.04 + m + i / 1000), f"{prefix}.gad_empty": str(0.25 * m)}
                row |= {f"{prefix}.rs_gad_beats_rest": "0.65", f"{prefix}.n_images": "40"}
                row[f"{prefix}.tests.rs_gad_vs_rest.verdict"] = "not significant" if m else "supported"
                row[f"{prefix}.tests.rs_gad_vs_rest.p"] = "0.01"
        row |= {key: changed.get(key, "base") for key in keys}
        row |= {"gadlib/method": "d41d8cd98f00b204e9800998ecf8427e.dir", "artifacts": "x"}
        rows.append(row)
    text = pd.DataFrame(rows).to_csv(index=False)
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


RUNS = {
    "workspace": {},
    "main": {},
    "alpha-2": {"support.alpha_scale": "2.0"},
    "lr-small": {"support.lr": "1e-05", "attribution.q": "0.95"},
}


def test_the_headline_table_has_one_row_per_run_and_experiment():
    table = compare.headline_table(exp_show(RUNS), "IntegratedGradients")
    assert list(table.columns) == ["run", "experiment", "acc", "RC med", "empty", "RS>rest", "RS verdict"]
    assert table["run"].tolist() == ["workspace"] * 2 + ["main"] * 2 + ["alpha-2"] * 2 + ["lr-small"] * 2
    first = table.iloc[0].to_dict()
    assert first == {
        "run": "workspace",
        "experiment": "tshirt_vs_shirt",
        "acc": "0.800",
        "RC med": "0.04",
        "empty": "0%",
        "RS>rest": "65%",
        "RS verdict": "supported",
    }
    saliency = compare.headline_table(exp_show(RUNS), "Saliency").iloc[0]
    assert (saliency["empty"], saliency["RS verdict"]) == ("25%", "not significant")


def test_only_params_that_differ_are_shown_and_metrics_and_dependencies_never():
    shown = exp_show(RUNS)
    changed = compare.changed_params(shown, compare.param_keys(read_yaml(PARAMS_FILE.read_text())))
    assert sorted(changed.columns) == ["attribution.q", "support.alpha_scale", "support.lr"]


def test_the_rendering_fits_80_columns():
    keys = compare.param_keys(read_yaml(PARAMS_FILE.read_text()))
    lines = compare.render(exp_show(RUNS), "IntegratedGradients", keys).splitlines()
    assert "alpha-2: support.alpha_scale=2.0" in lines
    assert "lr-small: attribution.q=0.95, support.lr=1e-05" in lines  # in dvc's column order
    assert "workspace: params as in main" in lines and "main: the reference for the others" in lines
    assert sum(line.split()[:2] == ["tshirt_vs_shirt", "0.800"] for line in lines) == 4
    many = dict(RUNS, everything={key: "changed-value" for key in sorted(keys)})
    lines = compare.render(exp_show(many), "IntegratedGradients", keys).splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    assert sum(line.startswith("    ") for line in lines) <= 2 * len(many)  # at most 3 lines of params per run


def test_missing_metrics_show_as_a_dash():
    shown = exp_show(RUNS)
    shown.loc[2, "tshirt_vs_shirt.accuracy"] = ""  # a queued or failed run
    assert compare.headline_table(shown, "IntegratedGradients")["acc"].tolist()[4] == "-"


def test_main_reads_the_projects_params_from_any_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the tool finds the project from its own location
    monkeypatch.setattr(compare, "exp_show_csv", lambda args: exp_show(RUNS))
    assert compare.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("GAD over IntegratedGradients ")  # the first method of params.yaml
    assert "alpha-2: support.alpha_scale=2.0" in out


def test_main_reports_a_failing_dvc_and_runs_without_metrics(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("`dvc exp show --csv` failed: not a DVC repository")

    monkeypatch.setattr(compare, "exp_show_csv", broken)
    assert compare.main([]) == 1
    assert capsys.readouterr().err == "error: `dvc exp show --csv` failed: not a DVC repository\n"
    no_metrics = exp_show(RUNS)[["Experiment", "rev", "typ"]]
    monkeypatch.setattr(compare, "exp_show_csv", lambda args: no_metrics)
    assert compare.main(["--method", "Saliency"]) == 1
    assert "no run has metrics yet" in capsys.readouterr().err
