"""Checks of images, masks and per-pixel importance, for numpy arrays and torch tensors alike."""

import numpy as np
import pytest
import torch

from gadlib.common.checks import (
    PIXEL_RANGE_TOLERANCE,
    check_batch,
    check_finite_images,
    check_images,
    check_importance,
    check_mask,
    name_indices,
    non_finite_rows,
    outside_pixel_range,
    pixel_range,
    pixel_range_note,
)


def test_images_pass_through_and_bad_ones_name_the_problem():
    images = torch.rand(2, 3, 4, 4)
    assert check_images(images, pixel_space=True) is images
    assert check_images(images.numpy(), channels=(1, 3)) is not None
    with pytest.raises(TypeError, match="one tensor"):
        check_images((images,), "inputs", require_tensor=True)
    with pytest.raises(TypeError, match="floating-point"):
        check_images(images.long())
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) with N >= 1; got \(0, 3, 4, 4\)"):
        check_images(images[:0])
    with pytest.raises(ValueError, match=r"C in \(1, 3\)"):
        check_images(torch.rand(2, 2, 4, 4), channels=(1, 3))
    with pytest.raises(ValueError, match=r"outside \[0, 1\].*pixel-space"):
        check_images(images * 255, pixel_space=True)
    with pytest.raises(ValueError, match=r"\[nan, nan\]"):
        check_images(torch.full((1, 1, 2, 2), float("nan")), pixel_space=True)
    assert check_batch(torch.rand(5, 7)) is not None  # any (N, ...) batch


def test_masks_of_bool_or_0_1_numbers():
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[1, 1] = 1
    assert check_mask(mask).dtype == bool and check_mask(torch.from_numpy(mask)).sum() == 1
    batch = np.zeros((2, 4, 4), dtype=bool)
    assert check_mask(batch, "masks", shape=(2, 4, 4)) is batch
    with pytest.raises(ValueError, match=r"2-D \(H, W\).*mask\[i\]"):
        check_mask(batch)
    with pytest.raises(ValueError, match=r"masks must have shape \(N, H, W\) = \(3, 4, 4\); got \(2, 4, 4\)"):
        check_mask(batch, "masks", shape=(3, 4, 4))
    with pytest.raises(ValueError, match=r"e\.g\. \[0\.5\].*binarize"):
        check_mask(np.full((4, 4), 0.5))
    with pytest.raises(TypeError, match="dtype complex"):
        check_mask(np.zeros((4, 4), dtype=complex))


def test_importance_reads_non_finite_values_as_zero_and_refuses_negatives():
    values = torch.rand(2, 4, 4)
    values[0, 0, 0] = float("nan")
    with pytest.warns(RuntimeWarning, match="importance: 1 values are NaN or infinite"):
        checked = check_importance(values, shape=(2, 4, 4))
    assert checked.dtype == np.float32 and checked[0, 0, 0] == 0 and np.isfinite(checked).all()
    assert check_importance(np.ones((1, 2, 2), dtype=np.int64)).dtype == np.float32
    with pytest.raises(ValueError, match=r"\(N, H, W\) = \(2, 4, 5\) to match the images; got \(2, 4, 4\)"):
        check_importance(values.nan_to_num(), shape=(2, 4, 5))
    with pytest.raises(ValueError, match="non-negative"):
        check_importance(-torch.ones(1, 2, 2))


def test_non_finite_rows_and_their_names():
    values = np.zeros((14, 1, 2, 2))
    bad = [0, 2, 3, 4, 5, 6, 7, 8, 9, 11, 13]
    values[bad, 0, 1, 1] = np.nan
    values[13, 0, 0, 0] = -np.inf
    assert non_finite_rows(values) == bad and non_finite_rows(torch.from_numpy(values)) == bad
    assert name_indices(bad, 14) == "[0, 2, 3, 4, 5, 6, 7, 8, 9, 11, ...] (11 of 14)"
    with pytest.raises(ValueError, match=r"images hold NaN or infinite values in images \[0, 2, 3"):
        check_finite_images(values, "images")
    assert check_finite_images(values[[1, 10, 12]]) is not None


def test_the_pixel_range_tolerates_round_off_only():
    assert not outside_pixel_range(-PIXEL_RANGE_TOLERANCE, 1 + PIXEL_RANGE_TOLERANCE)
    assert outside_pixel_range(-0.01, 1.0) and outside_pixel_range(0.0, 1.01)
    assert pixel_range(np.array([[0.25, -2.0], [3.0, 0.5]])) == (-2.0, 3.0)
    assert "[-2, 3], outside [0, 1]" in pixel_range_note("images", -2.0, 3.0)
