"""The open-questions figures (tools/open_questions.py): the α sweep and GAD against SmoothGrad."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from gadlib import plots as plotting  # noqa: E402
from tools import open_questions as oq  # noqa: E402

pytestmark = pytest.mark.usefixtures("close_figures")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _drawn_lines(ax):
    """Lines with data (seaborn also adds empty lines for its legend entries)."""
    return [line for line in ax.get_lines() if len(line.get_xdata())]


def _strip_values(ax):
    """The y values of each non-empty strip, as sets."""
    return [set(np.round(c.get_offsets()[:, 1], 9)) for c in ax.collections if len(c.get_offsets())]


def _sweep_table(rng):
    rows = []
    for scale in (0.5, 1.0, 2.0):
        for method in ("Saliency", "IG"):
            for image in range(5):
                rows.append(
                    {
                        "scale": scale,
                        "method": method,
                        "image": image,
                        "rc": image / 4 * scale,  # per (scale, method): median 0.5 * scale, IQR [0.25, 0.75] * scale
                        "rs_gad": rng.normal(0.2, 0.05),
                        "rs_rest": rng.normal(0.1, 0.05),
                        "agreement": 1.0 - 0.01 * scale,
                    }
                )
    return pd.DataFrame(rows)


def test_alpha_sweep_medians_and_bands(rng):
    sweep = _sweep_table(rng)
    sweep.loc[0, "rc"] = np.nan  # Saliency, scale 0.5, image 0
    before = sweep.copy()
    fig = oq.plot_alpha_sweep(sweep)
    pd.testing.assert_frame_equal(sweep, before)
    assert len(fig.axes) == 3
    saliency, ig = [line for line in _drawn_lines(fig.axes[0]) if line.get_linestyle() == "-"]  # not RC = 1
    assert to_hex(ig.get_color()) == plotting.OKABE_ITO[1].lower()
    np.testing.assert_allclose(ig.get_xdata(), [0.5, 1.0, 2.0])
    np.testing.assert_allclose(ig.get_ydata(), [0.25, 0.5, 1.0])
    assert saliency.get_ydata()[0] == pytest.approx(np.median([0.125, 0.25, 0.375, 0.5]))  # the NaN left out
    assert len(fig.axes[0].collections) == 2  # one IQR band per method
    ig_band = fig.axes[0].collections[1].get_paths()[0].vertices
    at_one = ig_band[ig_band[:, 0] == 1.0, 1]
    assert np.isclose(at_one.min(), 0.25) and np.isclose(at_one.max(), 0.75)
    assert sorted(line.get_linestyle() for line in _drawn_lines(fig.axes[1])) == ["-", "-", "--", "--"]
    np.testing.assert_allclose(_drawn_lines(fig.axes[2])[0].get_ydata(), [0.995, 0.99, 0.98])
    (legend,) = fig.legends
    assert {"Saliency", "IG", "GAD regions", "rest of original"} <= {t.get_text() for t in legend.get_texts()}


def test_alpha_sweep_log2_axis_for_doubling_scales(rng):
    sweep = pd.concat([_sweep_table(rng).assign(scale=lambda t, k=k: t["scale"] * k) for k in (1, 8)])
    ax = oq.plot_alpha_sweep(sweep).axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "1", "2", "4", "8", "16"]


def test_alpha_sweep_rejects_mixed_experiments(rng):
    sweep = _sweep_table(rng)
    sweep["experiment"] = np.where(sweep["image"] < 2, "a", "b")
    with pytest.raises(ValueError, match="mixes experiments"):
        oq.plot_alpha_sweep(sweep)


def _variants_table(rng):
    rows = []
    for image in range(4):
        for method, region_set, complexity in (
            ("Saliency", "original", 0.4),
            ("Saliency", "gad", 0.1),
            ("SmoothGrad", "original", 0.2),
            ("SmoothGrad", "gad", 0.05),
        ):
            rows.append(
                {
                    "experiment": "fmnist",
                    "image": image,
                    "method": method,
                    "region_set": region_set,
                    "complexity": complexity,
                    "rs": rng.normal(0.1, 0.02),
                }
            )
    return pd.DataFrame(rows)


def test_gad_vs_smoothgrad_relative_complexity_and_cost(rng):
    table = _variants_table(rng)
    cost = {"Saliency": 0.01, "GAD(Saliency)": 0.2, "SmoothGrad": 0.5}
    fig = oq.plot_gad_vs_smoothgrad(table, cost=cost)
    ratio_ax, rs_ax, cost_ax = fig.axes
    assert [t.get_text() for t in ratio_ax.get_xticklabels()] == ["GAD(Saliency)", "SmoothGrad", "GAD(SmoothGrad)"]
    # complexity relative to Saliency: 0.25, 0.5 and 0.125 for every image
    assert _strip_values(ratio_ax) == [{0.25}, {0.5}, {0.125}]
    assert [t.get_text() for t in ratio_ax.child_axes[0].get_xticklabels()] == ["100%\nn=4"] * 3
    assert len(rs_ax.get_xticklabels()) == 4
    np.testing.assert_allclose([p.get_height() for p in cost_ax.patches], [0.01, 0.2, 0.5])
    assert [t.get_text() for t in cost_ax.texts] == ["0.01", "0.2", "0.5"]

    assert len(oq.plot_gad_vs_smoothgrad(table).axes) == 2
    with pytest.raises(ValueError, match="baseline 'nope'"):
        oq.plot_gad_vs_smoothgrad(table, baseline="nope")
    with pytest.raises(ValueError, match="no rows"):
        oq.plot_gad_vs_smoothgrad(table, variants={"x": ("Saliency", "random")})
    with pytest.raises(ValueError, match="non-negative seconds"):
        oq.plot_gad_vs_smoothgrad(table, cost={"Saliency": -1.0})


def test_gad_vs_smoothgrad_zero_baseline_is_left_out():
    table = pd.DataFrame(
        [
            {"experiment": "e", "image": i, "method": "Saliency", "region_set": rs, "complexity": c, "rs": 0.1}
            for i, (c0, c1) in enumerate(((0.0, 0.1), (0.4, 0.2)))
            for rs, c in (("original", c0), ("gad", c1))
        ]
    )
    fig = oq.plot_gad_vs_smoothgrad(table)
    labels = [t.get_text() for t in fig.axes[0].child_axes[0].get_xticklabels()]
    assert labels == ["100%\nn=1"]  # image 0 (zero baseline) dropped, image 1 ratio 0.5
    assert "1 NaN ratios" in fig.axes[0].get_xlabel()  # and counted
