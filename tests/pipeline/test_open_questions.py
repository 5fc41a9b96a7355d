"""The open-questions runner: override strings for `dvc exp run -S`, the planned runs, the sweep table."""

import json

import pandas as pd

from gadlib.pipeline import open_questions as oq


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


def test_support_size_runs_and_their_section(monkeypatch):
    plan = {
        "alpha_sweep": {"experiment": "a", "scales": []},
        "multiclass": {"experiments": {}},
        "smoothgrad": {},
        "support_size": {"sizes": [250, 1000]},
    }
    runs = oq.planned_runs(plan, ["a"])
    assert runs["support-250"] == ["support.max_train_per_class=250"] and "support-1000" in runs

    test = {"n": 30, "median_diff": 0.1, "ci95": [0.0, 0.2], "verdict": "not significant"}
    method = {"gad_empty": 0.1, "rc_median_nonempty": 0.05, "tests": {"rs_gad_vs_rest": test}}
    files = {
        "params.yaml": "support:\n  max_train_per_class: 500\n",
        "reports/metrics.json": json.dumps({"a": {"methods": {"IG": method}}}),
        "reports/experiments/a/fidelity.csv": "experiment,support_set,model,agreement,margin,target_margin,"
        "train_seconds\na,pair,0,1,2,2,10\na,pair,1,0.9,3,4,10\na,alpha0,1,0.95,2,2,8\n",
    }
    monkeypatch.setattr(oq, "read_at", lambda rev, path: files[path])
    text = "\n".join(oq.support_size_blocks(plan, {"support-250": "r250"}))
    rows = [line for line in text.splitlines() if line.startswith("|") and "IG" in line]
    assert [row.split("|")[1].strip() for row in rows] == ["250", "500"]  # the default (HEAD) and the finished run
    assert "0.75" in rows[0] and "18" in rows[0]  # margin reached 3/4; both sets' training seconds 10 + 8
