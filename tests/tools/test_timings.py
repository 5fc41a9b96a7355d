"""reports/timings.json (`python -m tools.timings`, run by `make repro` after `dvc repro`): each stage's
time from its executed notebook's metadata, the figures notebook's included, and their sum."""

import json

import nbformat
import pytest
import yaml

from tests.fixtures import ROOT
from tools import timings


def write_notebook(path, metadata: dict) -> None:
    """An executed notebook (one code cell) whose metadata holds ``metadata``, as papermill and the stage
    runner write them."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nb.metadata.update(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def stage_seconds(seconds: float) -> dict:
    """What tools/run_notebook.py records, beside papermill's shorter duration (kernel start excluded)."""
    return {"gadlib": {"stage_seconds": seconds}, "papermill": {"duration": seconds / 2}}


def test_stage_seconds_come_from_the_notebooks_and_add_up(tmp_path):
    reports = tmp_path / "reports"
    for notebook in timings.EXPERIMENT_STAGES.values():
        write_notebook(reports / "notebooks" / "a" / f"{notebook}.ipynb", stage_seconds(10.0))
    write_notebook(reports / "notebooks" / "b" / "01_prepare.ipynb", {"papermill": {"duration": 2.5}})  # older
    write_notebook(reports / timings.FIGURES_NOTEBOOK, stage_seconds(4.0))
    result = timings.collect_timings(["a", "b"], reports)
    assert result["stages"]["prepare"] == {"a": 10.0, "b": 2.5}
    assert result["stages"]["attribute"] == {"a": 10.0, "b": None}  # b's notebook is missing
    assert result["figures"] == 4.0
    assert result["total_seconds"] == pytest.approx(5 * 10.0 + 2.5 + 4.0)


def test_without_the_figures_notebook_its_time_is_unknown(tmp_path):
    reports = tmp_path / "reports"
    write_notebook(reports / "notebooks" / "a" / "02_train_classifier.ipynb", stage_seconds(7.5))
    write_notebook(reports / "notebooks" / "a" / "03_train_support.ipynb", {})  # neither record: unknown
    assert timings.collect_timings(["a"], reports) == {
        "stages": {stage: {"a": 7.5 if stage == "train_classifier" else None} for stage in timings.EXPERIMENT_STAGES},
        "figures": None,
        "total_seconds": 7.5,
    }
    assert timings.collect_timings(["a"], tmp_path / "nowhere")["total_seconds"] == 0.0


def dvc_outputs() -> dict[str, str]:
    """Stage name -> the executed notebook its dvc.yaml command writes (``${key}``: the experiment)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    outputs = {}
    for name, stage in stages.items():
        cmd = stage.get("do", stage)["cmd"].split()
        assert cmd[:3] == ["python", "-m", "tools.run_notebook"], cmd
        outputs[name] = cmd[4]
    return outputs


def test_the_experiment_stages_are_dvc_yamls_and_their_notebooks_where_it_writes_them(tmp_path):
    outputs = {name: path for name, path in dvc_outputs().items() if "${key}" in path}
    assert list(outputs) == list(timings.EXPERIMENT_STAGES)  # every per-experiment stage, in pipeline order
    for seconds, path in enumerate(outputs.values(), start=1):
        write_notebook(tmp_path / path.replace("${key}", "a"), stage_seconds(float(seconds)))
    result = timings.collect_timings(["a"], tmp_path / "reports")
    assert [by_experiment["a"] for by_experiment in result["stages"].values()] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_the_figures_time_is_read_where_the_figures_stage_writes_its_notebook(tmp_path):
    write_notebook(tmp_path / dvc_outputs()["figures"], stage_seconds(4.0))
    assert timings.collect_timings([], tmp_path / "reports")["figures"] == 4.0


def test_main_writes_reports_timings_json(project_dir, monkeypatch, capsys):
    monkeypatch.setattr(timings, "ROOT", project_dir)
    experiments = list(yaml.safe_load((project_dir / "params.yaml").read_text())["experiments"])
    for name in experiments:
        write_notebook(project_dir / "reports" / "notebooks" / name / "01_prepare.ipynb", stage_seconds(30.0))
    write_notebook(project_dir / "reports" / timings.FIGURES_NOTEBOOK, stage_seconds(60.0))
    assert timings.main() == 0
    written = json.loads((project_dir / "reports" / "timings.json").read_text())
    assert written == timings.collect_timings(experiments, project_dir / "reports")
    assert written["stages"]["prepare"] == {name: 30.0 for name in experiments}
    assert written["total_seconds"] == 30.0 * len(experiments) + 60.0
    minutes = written["total_seconds"] / 60
    assert capsys.readouterr().out == f"reports/timings.json: {minutes:.1f} min of stage wall time\n"
