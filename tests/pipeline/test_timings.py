"""reports/timings.json: each stage's time from its executed notebook, and their sum."""

import json

import pytest

from gadlib.pipeline import timings
from gadlib.pipeline.stage import STAGE_STARTED_ENV


def write_notebook(path, metadata):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [], "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}))


def test_stage_seconds_come_from_the_notebooks_and_add_up(tmp_path, monkeypatch):
    for notebook in timings.EXPERIMENT_STAGES.values():
        write_notebook(tmp_path / "a" / f"{notebook}.ipynb", {"gadlib": {"stage_seconds": 10.0}})
    write_notebook(tmp_path / "b" / "01_prepare.ipynb", {"papermill": {"duration": 2.5}})  # older notebooks
    monkeypatch.setenv(STAGE_STARTED_ENV, "0")
    monkeypatch.setattr(timings.time, "time", lambda: 4.0)
    result = timings.collect_timings(["a", "b"], tmp_path)
    assert result["stages"]["prepare"] == {"a": 10.0, "b": 2.5}
    assert result["stages"]["attribute"] == {"a": 10.0, "b": None}  # b's notebook is missing
    assert result["figures"] == 4.0
    assert result["total_seconds"] == pytest.approx(5 * 10.0 + 2.5 + 4.0)


def test_outside_a_stage_the_figures_time_is_unknown(tmp_path, monkeypatch):
    monkeypatch.delenv(STAGE_STARTED_ENV, raising=False)
    assert timings.collect_timings(["a"], tmp_path) == {
        "stages": {stage: {"a": None} for stage in timings.EXPERIMENT_STAGES},
        "figures": None,
        "total_seconds": 0.0,
    }
