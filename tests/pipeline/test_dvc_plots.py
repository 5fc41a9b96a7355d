"""dvc.yaml's plots: each template fills with DVC's own renderer from the columns the figures
notebook writes, and `dvc plots show` draws every plot of a real run (pipeline-marked)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.fixtures import ROOT, run_command
from tests.notebooks import notebook_source

TEMPLATES = ROOT / ".dvc" / "plots"


def data_plots() -> dict[str, dict]:
    """The plots of dvc.yaml drawn from data (id -> definition); the PNGs are left out."""
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    return {k: v for entry in plots if isinstance(entry, dict) for k, v in entry.items()}


def written_columns() -> dict[str, list[str]]:
    """File name -> the columns notebooks/06_figures.ipynb writes to reports/plots/ (its ``plot_tables``)."""
    tree = ast.parse(notebook_source("notebooks/06_figures.ipynb"))
    assign = next(
        n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "plot_tables"
    )
    return {
        ast.literal_eval(key): ast.literal_eval(value.elts[1])
        for key, value in zip(assign.value.keys, assign.value.values, strict=True)
    }


def columns_of(path: str) -> list[str]:
    """The columns a plot's file has: as the figures notebook writes them, or the committed file's header."""
    if Path(path).parent == Path("reports/plots"):
        return written_columns()[Path(path).name]
    return pd.read_csv(ROOT / path, nrows=0).columns.tolist()


def named_fields(spec) -> list[str]:
    """Every ``"field": <name>`` of a vega-lite spec that is not a DVC anchor."""
    if isinstance(spec, dict):
        own = [spec["field"]] if isinstance(spec.get("field"), str) and "<DVC_" not in spec["field"] else []
        return own + [f for value in spec.values() for f in named_fields(value)]
    if isinstance(spec, list):
        return [f for value in spec for f in named_fields(value)]
    return []


def test_the_figures_notebook_writes_the_three_tables_the_plots_read():
    assert sorted(written_columns()) == ["fidelity.csv", "rc.csv", "rs.csv"]
    used = {Path(path).name for plot in data_plots().values() for path in plot["y"] if path.startswith("reports/plots")}
    assert used == set(written_columns())


@pytest.mark.parametrize("plot_id", sorted(data_plots()))
def test_each_data_plot_has_its_template_and_its_fields(plot_id):
    definition = data_plots()[plot_id]
    template = TEMPLATES / f"{definition['template']}.json"
    assert template.is_file(), f"{plot_id}: no template {template.relative_to(ROOT)}"
    text = template.read_text()
    for anchor in ("<DVC_METRIC_DATA>", "<DVC_METRIC_X>", "<DVC_METRIC_Y>", "<DVC_METRIC_TITLE>"):
        assert anchor in text, f"{template.name} does not use {anchor}"
    ((path, y),) = definition["y"].items()
    columns = columns_of(path)
    assert definition["x"] in columns and y in columns, f"{plot_id}: {path} has {columns}"
    # the fields the template groups by (facets, colour, lines) are columns of the file too
    grouped = set(named_fields(json.loads(text))) - {"rev"}  # DVC adds the revision to every row
    assert grouped <= set(columns), f"{template.name} groups by {sorted(grouped - set(columns))}, not in {path}"


@pytest.mark.parametrize("plot_id", sorted(data_plots()))
def test_each_template_fills_with_dvcs_renderer(plot_id):
    vega = pytest.importorskip("dvc_render.vega")
    definition = data_plots()[plot_id]
    ((path, y),) = definition["y"].items()
    row = {column: "1" for column in columns_of(path)} | {"experiment": "a", "method": "m", "rev": "workspace"}
    renderer = vega.VegaRenderer(
        [row, dict(row, rev="HEAD")],
        plot_id,
        template=definition["template"],
        template_dir=str(TEMPLATES),
        x=definition["x"],
        y=y,
        title=definition["title"],
    )
    spec = renderer.get_filled_template()
    assert "<DVC_METRIC" not in json.dumps(spec), "an anchor was left unfilled"
    assert spec["data"]["values"][0]["rev"] == "workspace"
    assert spec["title"] == definition["title"]


@pytest.mark.pipeline
def test_dvc_plots_show_draws_every_plot_of_a_run(tiny_pipeline):
    result = run_command(["dvc", "plots", "show", "--json"], tiny_pipeline.repo)
    shown = json.loads(result.stdout)
    assert not shown.get("errors"), shown.get("errors")
    for plot_id in data_plots():
        (entry,) = shown["data"][plot_id]
        assert entry["type"] == "vega" and entry["content"]["data"]["values"], f"{plot_id} has no data"
