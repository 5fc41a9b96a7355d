"""Per-image evaluation table (RC, RS of every region set, baselines and controls) and its summary."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from gadlib.evaluation.table import (
    REGION_SETS,
    TABLE_COLUMNS,
    build_region_sets,
    evaluate_maps,
    significant_pixels,
    summarize,
)

H = W = 10


def left_half_model():
    """Linear 2-output model with positive weights on the left half, zero on the right half."""
    linear = nn.Linear(H * W, 2)
    with torch.no_grad():
        weight = torch.ones(2, H, W)
        weight[:, :, W // 2 :] = 0
        linear.weight.copy_(weight.reshape(2, -1))
        linear.bias.zero_()
    return nn.Sequential(nn.Flatten(), linear)


def two_blob_maps(n=2):
    """Original map: blob A (left, rows 1-2, cols 1-2) and blob B (right, rows 6-7, cols 7-8),
    three background rows apart, so dilation 1 does not join them.
    GAD map: blob A only, zero elsewhere (as a fused map is)."""
    original = torch.full((n, H, W), 0.01)
    original[:, 1:3, 1:3] = 1.0
    original[:, 6:8, 7:9] = 0.8
    gad = torch.zeros(n, H, W)
    gad[:, 1:3, 1:3] = 1.0
    return original, gad


def run(original, gad, **kwargs):
    images = torch.full((original.shape[0], 1, H, W), 0.9)
    args = dict(method="ig", threshold_mode="fraction_of_max", tau=0.5, dilation=1, rng=0, progress=False)
    args.update(kwargs)
    return evaluate_maps(left_half_model(), images, 0, original, gad, **args)


def test_two_blob_table_has_the_known_answers():
    original, gad = two_blob_maps()
    table = run(original, gad)
    assert list(table.columns) == [*TABLE_COLUMNS, "rs_black"]
    assert len(table) == 2 * len(REGION_SETS)
    assert table["region_set"].tolist() == list(REGION_SETS) * 2
    row = table[table.image == 0].set_index("region_set")
    assert row.loc["original", "n_regions"] == 2
    assert row.loc["original", "complexity"] == pytest.approx(8 / 100)
    assert row.loc["gad", "n_regions"] == 1
    assert row.loc["gad", "complexity"] == pytest.approx(4 / 100)
    assert row.loc["gad", "rc"] == pytest.approx(0.5) and row.loc["original", "rc"] == 1.0
    assert row.loc["rest", "area_pixels"] == 4  # blob B
    assert row.loc["random", "area_pixels"] == row.loc["gad", "area_pixels"] == 4
    # GAD keeps 4 pixels: the original's own top 4 are blob A; 4 random pixels of its 8 significant ones
    assert row.loc["top_n", "n_pixels"] == row.loc["random_subset", "n_pixels"] == 4
    assert row.loc["top_n", "complexity"] == pytest.approx(4 / 100)
    # Blob A is seen by the model (weights 1, pixel 0.9 -> 0 when black): drop 4 * 0.9.
    assert row.loc["gad", "score_drop"] == pytest.approx(3.6, abs=1e-5)
    assert row.loc["gad", "rs"] == pytest.approx(0.9, abs=1e-6) == row.loc["top_n", "rs"]
    assert row.loc["rest", "score_drop"] == pytest.approx(0.0, abs=1e-5)  # blob B is in the ignored half
    assert row.loc["original", "score_drop"] == pytest.approx(3.6, abs=1e-5)
    assert (table["score"] == table["score"].iloc[0]).all()
    np.testing.assert_allclose(table["score_drop"], table["score"] - table["occluded_score"])
    np.testing.assert_array_equal(table["rs"], table["rs_black"])
    assert summarize(table)["ig"]["rs_gad_beats_rest"] == 1.0


def test_the_random_control_stays_on_the_object():
    # the image is black (background) outside a square; the control may only land inside it
    original, gad = two_blob_maps(5)
    images = torch.zeros(5, 1, H, W)
    images[:, :, 2:8, 2:8] = 0.7
    sets = build_region_sets(images, original, gad, threshold_mode="fraction_of_max", rng=1, progress=False)
    assert (sets.masks["random"].sum(axis=(1, 2)) == sets.masks["gad"].sum(axis=(1, 2))).all()
    assert not (sets.masks["random"] & (images[:, 0] == 0).numpy()).any()


def test_other_fills_get_their_own_columns_and_the_control_its_rows():
    original, gad = two_blob_maps()
    control = torch.zeros_like(gad)
    control[:, 6:8, 7:9] = 1.0  # the control keeps blob B, which the model ignores
    table = run(original, gad, other_fills=("mean", "blur"), mean=(0.5,), control_importance=control)
    assert {"rs_black", "rs_mean", "rs_blur"} <= set(table.columns)
    row = table[table.image == 0].set_index("region_set")
    assert row.loc["gad", "rs_mean"] == pytest.approx(0.4, abs=1e-6)  # 0.9 -> 0.5 per pixel
    assert row.loc["gad_alpha0", "n_pixels"] == 4 and row.loc["gad_alpha0", "rs"] == pytest.approx(0, abs=1e-6)


def test_sparse_gad_map_keeps_only_its_nonzero_pixels_under_quantile_thresholding():
    # 4 of 100 pixels are non-zero: the 0.9-quantile is 0, and binarize alone would keep all 100.
    _, gad = two_blob_maps(1)
    kept = significant_pixels(gad, "quantile", q=0.9)
    assert kept.sum() == 4 and kept[0, 1:3, 1:3].all()
    original, gad = two_blob_maps(1)
    table = run(original, gad, threshold_mode="quantile", q=0.9)
    assert table.set_index("region_set").loc["gad", "n_pixels"] == 4


@pytest.mark.filterwarnings("ignore:.*all zero:RuntimeWarning")
def test_empty_original_map_gives_nan_rc():
    original, gad = two_blob_maps(2)
    original[1] = 0.0
    gad[1] = 0.0
    with pytest.warns(RuntimeWarning, match="relative complexity undefined for 1 of 2 maps"):
        table = run(original, gad)
    row = table[table.image == 1].set_index("region_set")
    assert row.loc["original", "complexity"] == 0.0
    assert math.isnan(row.loc["gad", "rc"])
    assert math.isnan(row.loc["gad", "rs"])  # empty set: RS undefined
    assert table[table.image == 0].set_index("region_set").loc["gad", "rc"] == pytest.approx(0.5)


def test_without_occlusion_the_model_is_not_called():
    class Refuses(nn.Module):
        def forward(self, x):
            raise AssertionError("the model must not run when occlusion=False")

    original, gad = two_blob_maps()
    images = torch.full((2, 1, H, W), 0.5)
    table = evaluate_maps(Refuses(), images, 0, original, gad, method="ig", rng=0, occlusion=False, progress=False)
    assert table[["score", "occluded_score", "score_drop", "rs"]].isna().all().all()
    assert table["complexity"].notna().all()


def test_random_sets_are_reproducible_from_the_seed():
    original, gad = two_blob_maps(3)
    images = torch.full((3, 1, H, W), 0.5)

    def random_scores(seed):
        table = evaluate_maps(left_half_model(), images, 0, original, gad, method="ig", rng=seed, progress=False)
        return table[table.region_set == "random"]["occluded_score"].to_numpy()

    np.testing.assert_array_equal(random_scores(5), random_scores(5))


def test_the_default_rng_is_a_fixed_seed():
    original, gad = two_blob_maps(3)
    images = torch.full((3, 1, H, W), 0.5)
    tables = [evaluate_maps(left_half_model(), images, 0, original, gad, method="ig", progress=False) for _ in "ab"]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    seeded = evaluate_maps(left_half_model(), images, 0, original, gad, method="ig", rng=0, progress=False)
    pd.testing.assert_frame_equal(tables[0], seeded)


def test_bad_inputs_raise():
    original, gad = two_blob_maps()
    images = torch.full((2, 1, H, W), 0.5)
    kwargs = dict(method="ig", rng=0, progress=False)
    with pytest.raises(ValueError, match="strictly between"):
        evaluate_maps(left_half_model(), images, 0, original, gad, q=1.5, **kwargs)
    with pytest.raises(ValueError, match=r"\(2, 10, 7\)"):
        evaluate_maps(left_half_model(), images, 0, original[:, :, :7], gad, **kwargs)
    with pytest.raises(ValueError, match="pixel-space"):
        evaluate_maps(left_half_model(), images * 255, 0, original, gad, **kwargs)


def hand_table():
    """Method ig, 3 images: RC 0.5, 2.0, NaN; RS gad 1, 2, 3; rest 0.5, 3, NaN; random 0, 0, 4."""
    rows = []
    values = {
        "original": ([1.0, 1.0, 1.0], [0.2, 0.1, 0.0]),
        "gad": ([1.0, 2.0, 3.0], [0.1, 0.2, 0.0]),
        "rest": ([0.5, 3.0, np.nan], [0.1, 0.0, 0.0]),
        "random": ([0.0, 0.0, 4.0], [0.1, 0.2, 0.0]),
    }
    rc = [0.5, 2.0, np.nan]
    for image in range(3):
        for name, (rs, complexity) in values.items():
            rows.append(
                dict(
                    image=image,
                    method="ig",
                    region_set=name,
                    rs=rs[image],
                    complexity=complexity[image],
                    rc=rc[image] if name == "gad" else np.nan,
                )
            )
    rows.append(dict(image=0, method="saliency", region_set="gad", rs=1.0, complexity=0.1, rc=0.9))
    return pd.DataFrame(rows)


def test_summarize_gives_the_hand_computed_numbers():
    summary = summarize(hand_table())
    ig = summary["ig"]
    assert ig["n_images"] == 3
    assert ig["rc_mean"] == pytest.approx(1.25)
    assert ig["rc_median"] == pytest.approx(1.25)
    assert ig["rc_std"] == pytest.approx(np.std([0.5, 2.0], ddof=1))
    assert ig["n_rc_nan"] == 1
    assert ig["rc_below_1"] == pytest.approx(0.5)  # 1 of the 2 finite RC
    assert ig["rs_gad_mean"] == pytest.approx(2.0)
    assert ig["rs_rest_mean"] == pytest.approx(1.75)
    assert ig["n_rs_rest_nan"] == 1
    assert ig["rs_random_mean"] == pytest.approx(4 / 3)
    assert ig["rs_gad_beats_rest"] == pytest.approx(0.5)  # 1 > 0.5 yes, 2 > 3 no; image 2 skipped
    assert ig["n_rs_gad_rest_pairs"] == 2
    assert ig["rs_gad_beats_random"] == pytest.approx(2 / 3)  # 1 > 0, 2 > 0, 3 > 4 no
    assert ig["complexity_gad_mean"] == pytest.approx(0.1)
    sal = summary["saliency"]
    assert sal["n_images"] == 1 and sal["rc_below_1"] == 1.0
    assert math.isnan(sal["rs_gad_beats_rest"])  # no rest row: no pair to compare
    json.dumps(summary)  # plain Python numbers
    assert all(type(v) in (int, float) for v in ig.values())


def test_summarize_refuses_duplicates_and_missing_columns():
    table = hand_table()
    with pytest.raises(ValueError, match="duplicate"):
        summarize(pd.concat([table, table]))
    with pytest.raises(ValueError, match="rs"):
        summarize(table.drop(columns="rs"))


def test_mean_fill_reaches_the_occlusion():
    original, gad = two_blob_maps(1)
    table = run(original, gad, fill="mean", mean=(0.5,))
    # Blob A: 4 pixels seen with weight 1 go from 0.9 to the mean 0.5.
    assert table.set_index("region_set").loc["gad", "score_drop"] == pytest.approx(1.6, abs=1e-5)


def test_region_sets_are_the_ones_the_table_reports():
    original, gad = two_blob_maps(3)
    images = torch.full((3, 1, H, W), 0.9)
    sets = build_region_sets(images, original, gad, threshold_mode="fraction_of_max", rng=4, progress=False)
    table = run(original, gad, rng=4)
    for name in REGION_SETS:
        rows = table[table.region_set == name]
        areas = np.median(sets.subset_draws.sum(axis=(2, 3)), axis=0) if name == "random_subset" else None
        np.testing.assert_array_equal(
            rows["area_pixels"], sets.masks[name].sum(axis=(1, 2)) if areas is None else areas
        )
    np.testing.assert_array_equal(sets.masks["rest"], sets.masks["original"] & ~sets.masks["gad"])
    assert (sets.masks["original"] | ~significant_pixels(original, "fraction_of_max").numpy()).all()
    assert [len(o) for o, g in sets.polygons] == [2, 2, 2]
