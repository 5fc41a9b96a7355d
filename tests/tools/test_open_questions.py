"""The open-questions runner: override strings for `dvc exp run -S`, the planned runs, the sweep table."""

import json

import pandas as pd

from tools import open_questions as oq


def test_override_value_follows_the_override_grammar():
    assert oq.override_value([0.5, 1.0]) == "[0.5, 1.0]"
    assert oq.override_value({"a": None, "b": True}) == "{a: null, b: true}"
    assert oq.override_value("Shirt") == "Shirt"
    assert oq.override_value("T-shirt/top") == "'T-shirt/top'"
    assert oq.override_value("Ankle boot") == "'Ankle boot'"
    assert oq.override_value("null") == "'null'"


def test_planned_runs_cover_the_sweep_multiclass_and_smoothgrad():
    plan = {
        "alpha_sweep": {"experiment": "a", "scales": [0.5, 2.0], "set": {"attribution.n_images": 5}},
        "multiclass": {"experiments": {"m": {"strategy": "split", "groups": "auto"}}, "set": {}},
        "smoothgrad": {"set": {"attribution.methods": ["Saliency", "SmoothGrad"]}},
    }
    runs = oq.planned_runs(plan, ["a", "b"])
    assert list(runs) == ["alpha-0.5", "alpha-2", "multiclass", "smoothgrad"]
    assert runs["alpha-2"] == ["~experiments.b", "attribution.n_images=5", "support.alpha_scale=2.0"]
    assert runs["multiclass"][:2] == ["~experiments", "+experiments={m: {strategy: split, groups: auto}}"]
    assert runs["smoothgrad"] == ["attribution.methods=[Saliency, SmoothGrad]"]


def test_sweep_table_pairs_rs_per_image():
    hull = pd.DataFrame(
        [
            {"method": "Saliency", "image": i, "region_set": s, "rs": rs, "rc": rc}
            for i, (g, r) in enumerate([(2.0, 1.0), (0.5, 1.5)])
            for s, rs, rc in (
                ("original", 1.0, float("nan")),
                ("gad", g, 0.5 + i),
                ("rest", r, float("nan")),
                ("random", 0.1, float("nan")),
            )
        ]
    )
    fidelity = pd.DataFrame({"model": [0, 1, 2], "agreement": [1.0, 0.9, 0.7]})
    table = oq.sweep_table(hull, fidelity, scale=4.0)
    assert list(table["rs_gad"]) == [2.0, 0.5]
    assert list(table["rs_rest"]) == [1.0, 1.5]
    assert list(table["rc"]) == [0.5, 1.5]
    assert table["agreement"].iloc[0] == 0.8  # mean over the support models, the original left out
    assert (table["scale"] == 4.0).all()


def test_experiment_revisions_keep_finished_runs_only(monkeypatch):
    refs = [
        "a1 refs/exps/ab/cdef/alpha-1",
        "b2 refs/exps/celery/stash",
        "c3 refs/exps/ab/cdef/alpha-1",
        "d4 refs/exps/exec/x",
    ]
    monkeypatch.setattr(oq, "_stdout", lambda *cmd, check=True: "\n".join(refs))
    assert oq.experiment_revisions() == {"alpha-1": "c3"}  # the newest of a repeated name


def test_collect_without_finished_runs_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(oq, "REPORT", tmp_path / "open_questions.md")
    plan = {"alpha_sweep": {"experiment": "a", "scales": [1.0]}, "multiclass": {"experiments": {}}, "smoothgrad": {}}
    text = oq.collect(plan, {})
    assert text == (tmp_path / "open_questions.md").read_text()
    assert [line for line in text.splitlines() if line.startswith("##")] == [
        "## 1. The effect of α",
        "## 2. Multi-class GAD: One vs. All and Split output space",
        "## 3. GAD against SmoothGrad",
    ]
    assert text.count("not finished yet") == 2 and "No α-sweep experiment has finished yet." in text


def test_collect_keeps_the_sections_whose_experiments_are_not_here(tmp_path, monkeypatch):
    report = tmp_path / "open_questions.md"
    monkeypatch.setattr(oq, "REPORT", report)
    plan = {"alpha_sweep": {"experiment": "a", "scales": [1.0]}, "multiclass": {"experiments": {}}, "smoothgrad": {}}
    earlier = oq.collect(plan, {}).replace(oq.NOT_FINISHED["multiclass"], "| a table from finished runs |")
    report.write_text(earlier)
    text = oq.collect(plan, {})  # a fresh clone: no experiment refs at all
    assert "| a table from finished runs |" in text and oq.NOT_FINISHED["multiclass"] not in text
    assert oq.NOT_FINISHED["alpha"] in text and oq.NOT_FINISHED["smoothgrad"] in text  # nothing earlier to keep
    assert [line for line in text.splitlines() if line.startswith("##")] == [
        line for line in earlier.splitlines() if line.startswith("##")
    ]


def test_sections_split_at_second_level_headings_only():
    text = "# title\n\nintro\n\n## 1. one\n\nbody ### not a split\n\n## 2. two\n\nlast\n"
    sections = oq._sections(text)
    assert [heading for heading, _ in sections] == ["", "## 1. one\n", "## 2. two\n"]
    assert "".join(heading + body for heading, body in sections) == text


def _one_run_per_revision(monkeypatch, tmp_path, rc: float, verdict: str, fidelity_rows: str) -> None:
    """Every revision holds the same one-experiment run ("a", method "IG"; default size 500 in params.yaml);
    tables go to ``tmp_path``."""
    test = {"n": 30, "median_diff": 0.1, "ci95": [0.0, 0.2], "verdict": verdict}
    method = {"gad_empty": 0.0, "rc_median_nonempty": rc, "tests": {"rs_gad_vs_rest": test}}
    files = {
        "params.yaml": "support:\n  max_train_per_class: 500\n",
        "reports/metrics.json": json.dumps({"a": {"methods": {"IG": method}}}),
        "reports/experiments/a/fidelity.csv": "experiment,support_set,model,agreement,margin,target_margin,"
        "train_seconds\n" + fidelity_rows,
    }
    monkeypatch.setattr(oq, "read_at", lambda rev, path: files[path])
    monkeypatch.setattr(oq, "OUT_DIR", tmp_path)


def test_support_size_runs_and_their_section(tmp_path, monkeypatch):
    plan = {
        "alpha_sweep": {"experiment": "a", "scales": []},
        "multiclass": {"experiments": {}},
        "smoothgrad": {},
        "support_size": {"sizes": [250, 1000]},
    }
    runs = oq.planned_runs(plan, ["a"])
    assert runs["support-250"] == ["support.max_train_per_class=250"] and "support-1000" in runs

    fidelity = "a,pair,0,1,2,2,10\na,pair,1,0.9,3,4,10\na,alpha0,1,0.95,2,2,8\n"
    _one_run_per_revision(monkeypatch, tmp_path, 0.05, "not significant", fidelity)
    text = "\n".join(oq.support_size_blocks(plan, {"support-250": "r250"}))
    rows = [line for line in text.splitlines() if line.startswith("|") and "IG" in line]
    assert [row.split("|")[1].strip() for row in rows] == ["250", "500"]  # the default (HEAD) and the finished run
    assert "0.5" in rows[0] and "18" in rows[0]  # margin gain reached (3 - 2) / (4 - 2); training seconds 10 + 8
    table = pd.read_csv(tmp_path / "support_size.csv")  # the README's support-size block reads this
    assert table["images_per_class"].tolist() == [250, 500]
    assert table["margin_reached"].tolist() == [0.5, 0.5] and table["support_train_seconds"].tolist() == [18, 18]


def test_support_sizes_without_their_experiment_keep_their_committed_rows(tmp_path, monkeypatch):
    plan = {"support_size": {"sizes": [250, 1000]}}
    _one_run_per_revision(monkeypatch, tmp_path, 0.5, "supported", "a,pair,0,1,2,2,10\na,pair,1,0.9,3,4,10\n")
    committed = pd.DataFrame(
        {"images_per_class": [250, 500], "experiment": "a", "method": "IG", "gad_empty": 0.0}
        | {"rc_median_nonempty": [0.6, 0.1], "rs_diff_median": 0.2, "rs_diff_ci_low": 0.1, "rs_diff_ci_high": 0.3}
        | {"rs_verdict": "not significant", "n": 40, "support_agreement": 0.96, "margin_reached": 0.6}
        | {"support_train_seconds": 48.0}
    )
    committed.to_csv(tmp_path / "support_size.csv", index=False)
    text = "\n".join(oq.support_size_blocks(plan, {}))  # no support-size experiment in this clone
    table = pd.read_csv(tmp_path / "support_size.csv")
    assert table["images_per_class"].tolist() == [250, 500]
    assert table["rc_median_nonempty"].tolist() == [0.6, 0.5]  # 250 kept; the default re-read from HEAD
    assert "against 250 images per class (1000: planned, not run yet)" in text
    committed.loc[0, "margin_reached"] = None  # a run recorded before the column existed
    committed.to_csv(tmp_path / "support_size.csv", index=False)
    rows = [line for line in "\n".join(oq.support_size_blocks(plan, {})).splitlines() if line.startswith("| ")]
    assert "not recorded" in rows[1] and "not recorded" not in rows[2]  # header, 250, 500
