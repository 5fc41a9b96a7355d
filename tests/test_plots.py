"""Tests for gadlib.plots: small seeded inputs, panel counts, shared scales, validation, saving."""

from __future__ import annotations

import copy

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from shapely.geometry import MultiPolygon, Polygon, box  # noqa: E402

from gadlib import plots as plotting  # noqa: E402

N, H, W = 3, 8, 10
LABELS = ["original", "support 1 (α=0.5)", "support 2 (α=1)"]


pytestmark = pytest.mark.usefixtures("close_figures")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def images(rng):
    return rng.uniform(0, 1, size=(N, 1, H, W)).astype(np.float32)


@pytest.fixture
def maps(rng):
    """Two methods with very different magnitudes; support 2 ten times larger than the rest."""
    importance, gad = {}, {}
    for method, scale in (("Saliency", 1.0), ("IntegratedGradients", 1e-3)):
        m = rng.uniform(0, scale, size=(len(LABELS), N, H, W))
        m[2] *= 10
        importance[method] = m
        keep = m[0] >= np.quantile(m[0], 0.9, axis=(1, 2), keepdims=True)
        gad[method] = np.where(keep, m[0], 0.0)
    return importance, gad


def _tidy_table(rng, experiments=("fmnist", "cats"), methods=("Saliency", "IG"), n_images=6):
    rows = []
    for experiment in experiments:
        for method in methods:
            for image in range(n_images):
                orig_c = rng.uniform(0.1, 0.5)
                for region_set in ("original", "gad", "rest", "random"):
                    complexity = orig_c if region_set == "original" else rng.uniform(0.01, 0.3)
                    drop = rng.normal(1.0, 0.5)
                    area = rng.integers(5, 50)
                    rows.append(
                        {
                            "experiment": experiment,
                            "image": image,
                            "method": method,
                            "region_set": region_set,
                            "n_regions": 2,
                            "complexity": complexity,
                            "area_pixels": area,
                            "score": 3.0,
                            "occluded_score": 3.0 - drop,
                            "score_drop": drop,
                            "rs": drop / area,
                            "rc": complexity / orig_c if region_set == "gad" else np.nan,
                        }
                    )
    return pd.DataFrame(rows)


def _clims(ax):
    return ax.images[0].get_clim()


# --------------------------------------------------------------------------------------------
# attribution grid
# --------------------------------------------------------------------------------------------
def test_attribution_grid_layout_and_shared_scale_per_row(images, maps):
    importance, gad = maps
    fig = plotting.plot_attribution_grid(images, importance, gad, LABELS)
    assert isinstance(fig, Figure)
    n_rows, n_cols = N * 2, len(LABELS) + 2
    image_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(image_axes) == n_rows * n_cols
    assert len(fig.axes) == n_rows * n_cols + n_rows  # one colour bar per row
    rows = [image_axes[r * n_cols : (r + 1) * n_cols] for r in range(n_rows)]
    row_clims = []
    for row in rows:
        clims = {_clims(ax) for ax in row[1:]}  # every model and GAD: one scale
        assert len(clims) == 1
        ((vmin, vmax),) = clims
        assert vmin == 0.0 and vmax > 0
        row_clims.append(vmax)
    # the methods differ by 1000x, so a single global scale would be wrong
    assert row_clims[0] / row_clims[1] > 100
    # the scale covers the big support model: vmax above the original's own maximum
    assert row_clims[0] > importance["Saliency"][0, 0].max()


def test_attribution_grid_share_across_images_and_subset(images, maps):
    importance, gad = maps
    fig = plotting.plot_attribution_grid(
        images, importance, gad, LABELS, image_indices=[2, 0], share_across_images=True
    )
    n_cols = len(LABELS) + 2
    image_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(image_axes) == 2 * 2 * n_cols
    saliency_rows = [image_axes[0:n_cols], image_axes[2 * n_cols : 3 * n_cols]]
    assert {_clims(ax) for row in saliency_rows for ax in row[1:]} == {_clims(saliency_rows[0][1])}
    assert "image 2" in image_axes[0].get_ylabel()


def test_attribution_grid_does_not_modify_inputs(images, maps):
    importance, gad = maps
    before = (images.copy(), copy.deepcopy(importance), copy.deepcopy(gad))
    plotting.plot_attribution_grid(images, importance, gad, LABELS)
    np.testing.assert_array_equal(images, before[0])
    for method in importance:
        np.testing.assert_array_equal(importance[method], before[1][method])
        np.testing.assert_array_equal(gad[method], before[2][method])


def test_attribution_grid_all_zero_maps_get_a_valid_scale(images):
    zeros = {"Saliency": np.zeros((2, N, H, W))}
    fig = plotting.plot_attribution_grid(images, zeros, {"Saliency": np.zeros((N, H, W))}, ["original", "support 1"])
    assert _clims(fig.axes[1]) == (0.0, 1.0)


def test_attribution_grid_rgb_images(rng, maps):
    importance, gad = maps
    rgb = rng.uniform(0, 1, size=(N, 3, H, W))
    fig = plotting.plot_attribution_grid(rgb, importance, gad, LABELS, image_indices=[0])
    assert fig.axes[0].images[0].get_array().shape == (H, W, 3)


def _bad_grid_inputs(case, images, importance, gad):
    """(images, importance, gad, labels) with one thing wrong."""
    imp, g, labels = {"Saliency": importance["Saliency"]}, {"Saliency": gad["Saliency"]}, LABELS
    if case == "map shape":
        imp = {"Saliency": imp["Saliency"][:, :, :4]}
    elif case == "gad shape":
        g = {"Saliency": g["Saliency"][0]}
    elif case == "image shape":
        images = images[:, 0]
    elif case == "label count":
        labels = LABELS[:2]
    elif case == "negative":
        imp = {"Saliency": -imp["Saliency"]}
    elif case == "methods":
        g = {"IG": g["Saliency"]}
    elif case == "normalised images":
        images = images * 5 - 2
    return images, imp, g, labels


@pytest.mark.parametrize(
    "case, message",
    [
        ("map shape", r"\(3, 3, 4, 10\)"),
        ("gad shape", r"\(8, 10\)"),
        ("image shape", r"\(3, 8, 10\)"),
        ("label count", r"\(2, 3, 8, 10\).*got \(3, 3, 8, 10\)"),
        ("negative", "negative"),
        ("methods", "same methods"),
        ("normalised images", r"\[0, 1\]"),
    ],
)
def test_attribution_grid_rejects_bad_inputs(images, maps, case, message):
    with pytest.raises(ValueError, match=message):
        plotting.plot_attribution_grid(*_bad_grid_inputs(case, images, *maps))


def test_attribution_grid_rejects_out_of_range_index(images, maps):
    with pytest.raises(ValueError, match=r"\[5\]"):
        plotting.plot_attribution_grid(images, *maps, LABELS, image_indices=[5])


# --------------------------------------------------------------------------------------------
# hulls
# --------------------------------------------------------------------------------------------
def test_plot_hulls_draws_each_polygon_with_legend(images):
    original = [box(1, 1, 4, 5), box(6, 2, 9, 7)]
    gad = [MultiPolygon([box(2, 2, 3, 3), box(7, 3, 8, 4)]), Polygon()]  # the empty one is skipped
    fig = plotting.plot_hulls(images[0], original, gad, title="img 0")
    ax = fig.axes[0]
    assert len(ax.patches) == 4  # one patch per region: 2 original + 2 GAD parts
    assert [p.get_linestyle() for p in ax.patches] == ["--", "--", "-", "-"]
    assert ax.images[0].get_extent() == [0, W, H, 0]  # pixel (r, c) covers [c, c+1] x [r, r+1]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["original (2 regions)", "GAD (2 regions)"]
    assert ax.get_title() == "img 0"


def test_plot_hulls_leaves_holes_open():
    ring = Polygon([(0, 0), (10, 0), (10, 8), (0, 8)], holes=[[(3, 2), (3, 6), (7, 6), (7, 2)]])
    fig = plotting.plot_hulls(np.zeros((1, H, W)), [ring], [])  # a black image: any tint is the fill
    ax = fig.axes[0]
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())

    def pixel(x, y):
        column, row = ax.transData.transform((x, y))
        return rgba[int(fig.bbox.height - row), int(column), :3]

    assert pixel(5, 4).max() == 0  # the hole's centre shows the image
    assert pixel(1.5, 4).max() > 0  # the ring around it is tinted


def test_plot_hulls_uses_given_axes(images):
    fig, axes = plt.subplots(1, 2)
    out = plotting.plot_hulls(images[0], [], [box(0, 0, 2, 2)], ax=axes[1])
    assert out is fig
    assert len(axes[1].patches) == 1 and len(axes[0].patches) == 0


def test_plot_hulls_rejects_bad_inputs(images):
    with pytest.raises(ValueError, match=r"got \(1, 10\)"):
        plotting.plot_hulls(images[0, :, 0], [], [])
    with pytest.raises(TypeError, match="original_polygons\\[0\\].*LineString"):
        from shapely.geometry import LineString

        plotting.plot_hulls(images[0], [LineString([(0, 0), (1, 1)])], [])


# --------------------------------------------------------------------------------------------
# occlusion examples
# --------------------------------------------------------------------------------------------
@pytest.fixture
def occlusion(rng):
    masks = {name: np.zeros((N, H, W), dtype=bool) for name in ("gad", "rest", "random")}
    masks["gad"][:, 1:3, 1:3] = True
    masks["rest"][:, 4:6, 2:7] = True
    masks["random"][0, 0, 0] = True  # image 0 has 1 pixel; images 1, 2 an empty random set
    drops = {
        "gad": np.array([2.0, 1.0, 0.5]),
        "rest": np.array([1.0, 1.0, 1.0]),
        "random": np.array([0.1, 0.0, 0.0]),
    }
    return masks, drops


def test_occlusion_examples_layout_content_and_titles(images, occlusion):
    masks, drops = occlusion
    before = (images.copy(), copy.deepcopy(masks), copy.deepcopy(drops))
    fig = plotting.plot_occlusion_examples(images, masks, drops, image_indices=[0, 1])
    assert len(fig.axes) == 2 * (1 + 3)
    gad_ax = fig.axes[1]
    shown = np.asarray(gad_ax.images[0].get_array())
    assert np.all(shown[1:3, 1:3] == 0.0)  # occluded with black
    np.testing.assert_allclose(shown[~masks["gad"][0]], images[0, 0][~masks["gad"][0]])
    assert "drop 2" in gad_ax.get_title() and "RS 0.5" in gad_ax.get_title()  # 2.0 / 4 px
    assert "RS n/a" in fig.axes[4 + 3].get_title()  # empty random set of image 1
    np.testing.assert_array_equal(images, before[0])
    for name in masks:
        np.testing.assert_array_equal(masks[name], before[1][name])
        np.testing.assert_array_equal(drops[name], before[2][name])


def test_occlusion_examples_custom_fill(images, occlusion):
    masks, drops = occlusion
    fill = np.full(images.shape, 0.25)
    fig = plotting.plot_occlusion_examples(images, masks, drops, fill_images=fill, image_indices=[0])
    shown = np.asarray(fig.axes[1].images[0].get_array())
    assert np.allclose(shown[1:3, 1:3], 0.25)
    fig = plotting.plot_occlusion_examples(images, masks, drops, fill_images=0.5, image_indices=[0])  # a number
    assert np.allclose(np.asarray(fig.axes[1].images[0].get_array())[1:3, 1:3], 0.5)
    with pytest.raises(ValueError, match=r"fill_images must be a number or have shape"):
        plotting.plot_occlusion_examples(images, masks, drops, fill_images=fill[:2])


def test_occlusion_examples_rejects_bad_inputs(images, occlusion):
    masks, drops = occlusion
    with pytest.raises(ValueError, match=r"\(3, 8, 9\)"):
        plotting.plot_occlusion_examples(images, {**masks, "gad": masks["gad"][..., :9]}, drops)
    with pytest.raises(ValueError, match=r"\(2,\)"):
        plotting.plot_occlusion_examples(images, masks, {**drops, "gad": drops["gad"][:2]})
    with pytest.raises(ValueError, match="same region sets"):
        plotting.plot_occlusion_examples(images, masks, {"gad": drops["gad"]})


# --------------------------------------------------------------------------------------------
# RC and RS summaries
# --------------------------------------------------------------------------------------------
def _strip_centres(ax):
    """Mean x of the points of each non-empty strip (one per box), left to right."""
    return sorted(c.get_offsets()[:, 0].mean() for c in ax.collections if len(c.get_offsets()))


def _strip_values(ax):
    """The y values of each non-empty strip, as sets."""
    return [set(np.round(c.get_offsets()[:, 1], 9)) for c in ax.collections if len(c.get_offsets())]


def test_rc_distributions_annotates_share_below_one_and_survives_nan(rng):
    table = _tidy_table(rng, experiments=("fmnist",), methods=("Saliency",), n_images=4)
    table.loc[table["region_set"] == "gad", "rc"] = [0.5, 0.8, 2.0, np.nan]  # 2 of the 3 finite values below 1
    before = table.copy()
    fig = plotting.plot_rc_distributions(table)
    ax = fig.axes[0]
    pd.testing.assert_frame_equal(table, before)
    assert [t.get_text() for t in ax.child_axes[0].get_xticklabels()] == ["67%\nn=3"]
    assert "1 NaN RC" in ax.get_xlabel()
    assert _strip_values(ax) == [{0.5, 0.8, 2.0}]
    assert any(np.allclose(line.get_ydata(), 1.0) for line in ax.get_lines() if len(line.get_ydata()) == 2)
    assert ax.get_legend() is None  # one experiment: nothing to tell apart


def test_rc_distributions_hue_per_experiment_annotations_over_their_boxes(rng):
    table = _tidy_table(rng)
    fig, ax = plt.subplots()
    assert plotting.plot_rc_distributions(table, ax=ax) is fig
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Saliency", "IG"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["fmnist", "cats"]
    top = ax.child_axes[0]
    assert [t.get_text()[-4:] for t in top.get_xticklabels()] == ["\nn=6"] * 4  # 2 methods x 2 experiments
    np.testing.assert_allclose(sorted(top.get_xticks()), _strip_centres(ax), atol=0.06)
    colours = [to_hex(c.get_facecolor()[0]) for c in ax.collections if len(c.get_offsets())]
    assert colours == [plotting.OKABE_ITO[0].lower(), plotting.OKABE_ITO[1].lower()] * 2


def test_rc_distributions_all_nan_and_log_scale(rng):
    table = _tidy_table(rng, experiments=("a",), methods=("m",), n_images=3)
    plotting.plot_rc_distributions(table.assign(rc=np.nan))  # nothing to draw, no crash
    wide = table.copy()
    wide.loc[wide["region_set"] == "gad", "rc"] = [0.01, 0.1, 3.0]
    assert plotting.plot_rc_distributions(wide).axes[0].get_yscale() == "log"
    wide.loc[wide["region_set"] == "gad", "rc"] = [0.0, 0.1, 3.0]
    assert plotting.plot_rc_distributions(wide).axes[0].get_yscale() == "linear"
    with pytest.raises(ValueError, match="log_scale"):
        plotting.plot_rc_distributions(wide, log_scale=True)


def test_rc_distributions_rejects_missing_columns_and_wrong_axes(rng):
    with pytest.raises(ValueError, match=r"missing columns \['rc'\]"):
        plotting.plot_rc_distributions(_tidy_table(rng).drop(columns="rc"))
    with pytest.raises(ValueError, match="1 matplotlib Axes"):
        plotting.plot_rc_distributions(_tidy_table(rng), ax="not an axes")


def test_rs_comparison_paired_share(rng):
    table = _tidy_table(rng, experiments=("a",), methods=("m",), n_images=4)
    table.loc[table["region_set"] == "gad", "rs"] = [0.3, 0.3, 0.1, 0.2]
    table.loc[table["region_set"] == "rest", "rs"] = [0.1, 0.2, 0.2, np.nan]
    before = table.copy()
    fig = plotting.plot_rs_comparison(table)
    pd.testing.assert_frame_equal(table, before)
    assert len(fig.axes) == 2  # the top annotation axes are child axes, not listed here
    box_ax, diff_ax = fig.axes
    legend = box_ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["gad", "rest", "random"]
    assert [to_hex(h.get_facecolor(), keep_alpha=False) for h in legend.legend_handles] == [
        plotting.REGION_SET_COLORS[name].lower() for name in ("gad", "rest", "random")
    ]
    assert [t.get_text() for t in diff_ax.child_axes[0].get_xticklabels()] == ["67%\nn=3"]
    assert _strip_values(diff_ax) == [{0.2, 0.1, -0.1}]  # gad - rest per image, the unpaired one left out
    assert "1 images without both RS" in diff_ax.get_xlabel()
    assert "1 NaN RS" in box_ax.get_xlabel()


def test_rs_comparison_single_panel_and_axes_checks(rng):
    table = _tidy_table(rng)
    fig, ax = plt.subplots()
    assert plotting.plot_rs_comparison(table, axes=ax, paired=False) is fig
    labels = ["fmnist\nSaliency", "fmnist\nIG", "cats\nSaliency", "cats\nIG"]
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert len(_strip_centres(ax)) == 4 * 3  # a strip per group and region set
    with pytest.raises(ValueError, match="2 matplotlib Axes"):
        plotting.plot_rs_comparison(table, axes=ax)
    with pytest.raises(ValueError, match="pass paired=False"):
        plotting.plot_rs_comparison(table[table["region_set"] != "rest"])


def test_rs_comparison_rejects_duplicate_rows(rng):
    table = _tidy_table(rng, experiments=("a",), methods=("m",), n_images=2)
    with pytest.raises(ValueError, match="more than one row"):
        plotting.plot_rs_comparison(pd.concat([table, table.iloc[[1]]]))


def test_box_plots_are_reproducible_and_leave_numpy_global_rng_alone(rng):
    table = _tidy_table(rng)
    np.random.seed(123)
    state = np.random.get_state()
    first = plotting.plot_rc_distributions(table).axes[0]
    second = plotting.plot_rc_distributions(table).axes[0]
    np.testing.assert_array_equal(np.random.get_state()[1], state[1])  # the caller's random stream goes on as it was
    for a, b in zip(first.collections, second.collections, strict=True):
        np.testing.assert_array_equal(a.get_offsets(), b.get_offsets())  # the same jitter each time


# --------------------------------------------------------------------------------------------
# support fidelity (the α sweep and GAD vs SmoothGrad: tests/tools/test_open_questions_plots.py)
# --------------------------------------------------------------------------------------------
def _fidelity_table():
    rows = []
    for experiment, drift in (("fmnist", 0.0), ("cats", 0.05)):
        for model, alpha in enumerate((0.0, 0.5, 1.0, 1.5)):
            rows.append(
                {
                    "experiment": experiment,
                    "model": model,
                    "alpha": alpha,
                    "accuracy": 0.95 - drift * model,
                    "agreement": 1.0 - drift * model,
                    "margin": 2.0 + 0.9 * alpha,
                    "target_margin": 2.0 + alpha,
                    "final_loss": np.nan if model == 0 else 0.1 * model,
                }
            )
    return pd.DataFrame(rows)


def _drawn_lines(ax):
    """Lines with data (seaborn also adds empty lines for its legend entries)."""
    return [line for line in ax.get_lines() if len(line.get_xdata())]


def test_support_fidelity_panels_and_lines():
    fidelity = _fidelity_table()
    before = fidelity.copy()
    fig = plotting.plot_support_fidelity(fidelity)
    pd.testing.assert_frame_equal(fidelity, before)
    assert len(fig.axes) == 4
    accuracy = _drawn_lines(fig.axes[0])
    assert [to_hex(line.get_color()) for line in accuracy] == [c.lower() for c in plotting.OKABE_ITO[:2]]
    np.testing.assert_allclose(accuracy[1].get_ydata(), [0.95, 0.9, 0.85, 0.8])
    dashed = [line for line in _drawn_lines(fig.axes[2]) if line.get_linestyle() == "--"]
    assert len(dashed) == 2  # one target line per experiment
    np.testing.assert_allclose(dashed[0].get_ydata(), [2.0, 2.5, 3.0, 3.5])
    np.testing.assert_allclose(_drawn_lines(fig.axes[3])[0].get_xdata(), [0.5, 1.0, 1.5])  # original: no loss
    (legend,) = fig.legends  # right of the panels, covering none
    assert {"fmnist", "cats", "achieved", "target"} <= {t.get_text() for t in legend.get_texts()}


def test_support_fidelity_several_support_sets_draw_mean_and_range():
    one_vs_all = pd.concat([_fidelity_table().assign(support_set=s) for s in ("a", "b")], ignore_index=True)
    one_vs_all.loc[(one_vs_all["support_set"] == "b") & (one_vs_all["model"] == 1), "accuracy"] -= 0.1
    fig = plotting.plot_support_fidelity(one_vs_all[one_vs_all["experiment"] == "fmnist"])
    (line,) = _drawn_lines(fig.axes[0])
    np.testing.assert_allclose(line.get_ydata(), [0.95, 0.9, 0.95, 0.95])  # mean of 0.95 and 0.85 at α = 0.5
    band = fig.axes[0].collections[0].get_paths()[0].vertices
    assert np.isclose(band[:, 1].min(), 0.85) and np.isclose(band[:, 1].max(), 0.95)


def test_support_fidelity_rejects_missing_columns_and_wrong_axes():
    with pytest.raises(ValueError, match="target_margin"):
        plotting.plot_support_fidelity(_fidelity_table().drop(columns="target_margin"))
    _, axes = plt.subplots(1, 3)
    with pytest.raises(ValueError, match="4 matplotlib Axes"):
        plotting.plot_support_fidelity(_fidelity_table(), axes=axes)
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_support_fidelity(_fidelity_table().iloc[:0])


# --------------------------------------------------------------------------------------------
# save
# --------------------------------------------------------------------------------------------
def test_save_figure_writes_png_atomically_and_closes(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    target = tmp_path / "sub" / "fig.png"
    plotting.save_figure(fig, target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in target.parent.iterdir()] == ["fig.png"]  # no temporary file left
    assert not plt.fignum_exists(fig.number)


def test_save_figure_rejects_other_suffix(tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match=r"\.png"):
        plotting.save_figure(fig, tmp_path / "fig.pdf")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# one attribution map, empty or not
# --------------------------------------------------------------------------------------------
def test_plot_attribution_draws_an_empty_gad_map_where_captum_fails(images):
    from captum.attr import visualization

    empty = np.zeros((1, H, W))
    with pytest.raises(AssertionError, match="Cannot normalize by scale factor = 0"):
        visualization.visualize_image_attr(
            np.moveaxis(empty, 0, -1),
            np.moveaxis(images[0], 0, -1),
            method="blended_heat_map",
            sign="absolute_value",
            use_pyplot=False,
        )
    fig = plotting.plot_attribution(empty, images[0], title="GAD")
    assert fig.axes[0].get_title() == "GAD (empty: no pixel kept)"
    fig = plotting.plot_attribution(np.ones((1, H, W)) * np.arange(W), title="GAD")
    assert fig.axes[0].get_title() == "GAD" and fig.axes[0].images[-1].get_clim() == (0.0, W - 1)


def test_plot_attribution_checks_its_shapes(images):
    with pytest.raises(ValueError, match="one \\(C, H, W\\) or \\(H, W\\) map"):
        plotting.plot_attribution(np.zeros((2, 1, H, W)))
    with pytest.raises(ValueError, match="of the map's size"):
        plotting.plot_attribution(np.zeros((H, W + 1)), images[0])
