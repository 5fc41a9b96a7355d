"""dvc.yaml's plots: the figures stage writes the tables they read, each template fills with DVC's
own renderer, and `dvc plots show` draws every plot of a real run (pipeline-marked)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from gadlib.pipeline import figures
from gadlib.pipeline.paths import ROOT
from tests.fixtures import run_command
from tests.pipeline.test_figures import METHODS, fidelity_table, hull_table

TEMPLATES = ROOT / ".dvc" / "plots"


def data_plots() -> dict[str, dict]:
    """The plots of dvc.yaml drawn from data (id -> definition); the PNGs are left out."""
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    return {k: v for entry in plots if isinstance(entry, dict) for k, v in entry.items()}


def columns_of(path: str) -> list[str]:
    """The columns a plot's file has: as written by the figures stage, or the committed file's header."""
    name = Path(path).name
    if Path(path).parent == Path("reports/plots"):
        return figures.PLOT_DATA_COLUMNS[name]
    return pd.read_csv(ROOT / path, nrows=0).columns.tolist()


def named_fields(spec) -> list[str]:
    """Every ``"field": <name>`` of a vega-lite spec that is not a DVC anchor."""
    if isinstance(spec, dict):
        own = [spec["field"]] if isinstance(spec.get("field"), str) and "<DVC_" not in spec["field"] else []
        return own + [f for value in spec.values() for f in named_fields(value)]
    if isinstance(spec, list):
        return [f for value in spec for f in named_fields(value)]
    return []


def test_write_plot_data_keeps_the_columns_and_rows_the_plots_draw(tmp_path):
    hull = pd.concat([hull_table(["a"], METHODS), hull_table(["b"], METHODS)], ignore_index=True)
    fidelity = pd.concat([fidelity_table(e, [0.5, 1.0]) for e in ("a", "b")], ignore_index=True)
    fidelity = pd.concat([fidelity, fidelity.assign(support_set="alpha0", alpha=0.0)], ignore_index=True)
    written = figures.write_plot_data(hull, fidelity, tmp_path)
    assert sorted(written) == sorted(figures.PLOT_DATA_COLUMNS)
    for name, columns in figures.PLOT_DATA_COLUMNS.items():
        assert pd.read_csv(tmp_path / name).columns.tolist() == columns
    rc = pd.read_csv(tmp_path / "rc.csv")
    assert len(rc) == len(hull[hull["region_set"] == "gad"])  # one row per image and method
    assert set(pd.read_csv(tmp_path / "rs.csv")["region_set"]) == set(hull["region_set"])
    assert "alpha0" not in set(pd.read_csv(tmp_path / "fidelity.csv")["support_set"])


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
