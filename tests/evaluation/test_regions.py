"""Regions: grouping, hull polygons from pixel squares, rasterisation, hull complexity, RC."""

import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.morphology import convex_hull_image

from gadlib.evaluation.regions import (
    HullComplexity,
    group_pixels,
    hull_complexity,
    hull_polygons,
    rasterize,
    relative_complexity,
)


def draw(shape, *pixels):
    mask = np.zeros(shape, dtype=bool)
    for r, c in pixels:
        mask[r, c] = True
    return mask


def test_square_blob_is_one_region_with_the_square_area():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:5, 3:6] = True
    polys = hull_polygons(mask)
    assert len(polys) == 1
    assert polys[0].area == pytest.approx(9.0)
    assert polys[0].bounds == (3.0, 2.0, 6.0, 5.0)  # x = column, y = row, pixel edges


def test_two_distant_blobs_are_two_regions():
    mask = np.zeros((12, 12), dtype=bool)
    mask[0:2, 0:2] = True
    mask[8:10, 8:11] = True
    groups = group_pixels(mask, dilation=1)
    assert [len(g) for g in groups] == [4, 6]
    hc = hull_complexity(hull_polygons(mask), mask.shape)
    assert hc == HullComplexity(10 / 144, 2, 10.0)


def test_dilation_bridges_a_one_pixel_gap_and_keeps_original_pixels():
    mask = draw((5, 7), (2, 1), (2, 3))  # one background pixel between them
    assert len(group_pixels(mask, dilation=0)) == 2
    groups = group_pixels(mask, dilation=1)
    assert len(groups) == 1
    # Dilation decides grouping only: the group holds the two original pixels, not the gap.
    assert groups[0].tolist() == [[2, 1], [2, 3]]
    assert hull_polygons(mask, dilation=1)[0].area == pytest.approx(3.0)  # 3 x 1 box


def test_square_footprint_bridges_gaps_up_to_2r_and_not_more():
    two_gap = draw((5, 9), (2, 1), (2, 4))  # two background pixels between
    three_gap = draw((5, 9), (2, 1), (2, 5))
    assert len(group_pixels(two_gap, dilation=1)) == 1
    assert len(group_pixels(three_gap, dilation=1)) == 2


def test_diagonal_neighbours_are_one_group_without_dilation():
    assert len(group_pixels(draw((4, 4), (0, 0), (1, 1)), dilation=0)) == 1


def test_l_shape_hull_area_by_hand():
    # Column 0, rows 0-2, plus row 2, columns 1-2: hull (0,0),(1,0),(3,2),(3,3),(0,3):
    # the 3 x 3 box minus the triangle (1,0),(3,0),(3,2) of area 2 -> 7.
    mask = draw((6, 6), (0, 0), (1, 0), (2, 0), (2, 1), (2, 2))
    polys = hull_polygons(mask, dilation=0)
    assert len(polys) == 1
    assert polys[0].area == pytest.approx(7.0)


def test_lone_pixel_two_pixels_and_collinear_pixels_have_positive_area():
    assert hull_polygons(draw((3, 3), (1, 1)))[0].area == pytest.approx(1.0)
    assert hull_polygons(draw((3, 3), (1, 0), (1, 1)))[0].area == pytest.approx(2.0)
    assert hull_polygons(draw((3, 3), (0, 0), (1, 1)))[0].area == pytest.approx(3.0)  # hexagon
    row = np.zeros((3, 8), dtype=bool)
    row[1, 2:6] = True
    assert hull_polygons(row)[0].area == pytest.approx(4.0)  # 4 x 1 rectangle
    diagonal = draw((3, 3), (0, 0), (1, 1), (2, 2))
    assert hull_polygons(diagonal)[0].area == pytest.approx(9.0 - 2 * 2.0)


def test_min_pixels_drops_small_groups():
    mask = np.zeros((10, 10), dtype=bool)
    mask[0, 0] = True
    mask[5:8, 5:8] = True
    assert [len(g) for g in group_pixels(mask, min_pixels=2)] == [9]
    assert hull_complexity(hull_polygons(mask, min_pixels=2), mask.shape).n_regions == 1


def test_union_counts_overlapping_hulls_once():
    # An L of 9 pixels (hull: the 5 x 5 box minus the triangle (5,1),(5,5),(1,5) -> 17) and a lone
    # pixel at (2, 2), a separate group at dilation 0 whose square lies inside the L's hull.
    mask = np.zeros((8, 8), dtype=bool)
    mask[0, 0:5] = True
    mask[0:5, 0] = True
    mask[2, 2] = True
    polys = hull_polygons(mask, dilation=0)
    assert sorted(p.area for p in polys) == pytest.approx([1.0, 17.0])
    assert hull_complexity(polys, mask.shape) == HullComplexity(17 / 64, 2, 17.0)


def test_hull_area_agrees_with_skimage_convex_hull_image():
    rng = np.random.default_rng(0)
    for _ in range(20):
        noise = ndimage.gaussian_filter(rng.random((40, 40)), 2.0)
        mask = noise > np.quantile(noise, 0.9)
        for group in group_pixels(mask, dilation=0):
            one = np.zeros_like(mask)
            one[group[:, 0], group[:, 1]] = True
            (poly,) = hull_polygons(one, dilation=0)
            reference = convex_hull_image(one).sum()
            assert abs(poly.area - reference) <= poly.length
            raster = rasterize([poly], mask.shape)
            assert abs(raster.sum() - poly.area) <= poly.length
            assert raster[one].all()  # the hull covers every pixel of its group


def test_rasterize_counts_centres_inside_or_on_the_boundary():
    mask = np.zeros((6, 6), dtype=bool)
    mask[1:4, 2:4] = True
    raster = rasterize(hull_polygons(mask), mask.shape)
    np.testing.assert_array_equal(raster, mask)  # a rectangle rasterises to itself
    # Diagonal pair: the hexagon's edges pass through the centres of (0, 1) and (1, 0).
    raster = rasterize(hull_polygons(draw((3, 3), (0, 0), (1, 1))), (3, 3))
    np.testing.assert_array_equal(raster, draw((3, 3), (0, 0), (1, 1), (0, 1), (1, 0)))
    assert not rasterize([], (4, 5)).any()


def test_empty_mask_has_complexity_zero_and_rc_is_nan_with_a_warning():
    empty = np.zeros((5, 5), dtype=bool)
    assert group_pixels(empty) == []
    assert hull_complexity(hull_polygons(empty), empty.shape) == HullComplexity(0.0, 0, 0.0)
    with pytest.warns(RuntimeWarning, match="undefined"):
        rc = relative_complexity(0.1, 0.0)
    assert np.isnan(rc)


def test_relative_complexity_values_and_arrays():
    assert relative_complexity(0.05, 0.1) == pytest.approx(0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert relative_complexity(0.0, 0.2) == 0.0  # empty GAD map: defined, RC 0
    with pytest.warns(RuntimeWarning) as record:
        rc = relative_complexity(np.array([0.1, 0.3, 0.0]), np.array([0.2, 0.0, 0.0]))
    assert len(record) == 1  # one warning per call, not one per map
    np.testing.assert_array_equal(np.isnan(rc), [False, True, True])
    with pytest.raises(ValueError, match="-0.1"):
        relative_complexity(-0.1, 0.2)


def test_accepts_01_and_torch_masks():
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[1, 1] = 1
    assert len(hull_polygons(mask)) == 1
    assert len(hull_polygons(torch.from_numpy(mask.astype(bool)))) == 1


def test_bad_inputs_raise_with_the_bad_value():
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        group_pixels(np.zeros((2, 4, 4), dtype=bool))
    with pytest.raises(ValueError, match="0.5"):
        group_pixels(np.full((4, 4), 0.5))
    with pytest.raises(ValueError, match="dilation"):
        group_pixels(np.zeros((4, 4), dtype=bool), dilation=-1)
    with pytest.raises(ValueError, match="dilation"):
        group_pixels(np.zeros((4, 4), dtype=bool), dilation=1.5)
    with pytest.raises(ValueError, match="min_pixels"):
        group_pixels(np.zeros((4, 4), dtype=bool), min_pixels=0)
    with pytest.raises(ValueError, match="shape"):
        hull_complexity([], (0, 4))


def test_raster_and_union_area_match_direct_shapely_on_random_masks():
    import shapely
    from shapely.geometry import Point

    rng = np.random.default_rng(1)
    for _ in range(5):
        mask = rng.random((15, 17)) < 0.15
        polys = hull_polygons(mask, dilation=0)
        union = shapely.union_all(polys)
        expected = np.array([[union.intersects(Point(c + 0.5, r + 0.5)) for c in range(17)] for r in range(15)])
        np.testing.assert_array_equal(rasterize(polys, mask.shape), expected)
        assert hull_complexity(polys, mask.shape).area_pixels == pytest.approx(union.area)
        assert (rasterize(polys, mask.shape) | ~mask).all()  # raster contains the mask
