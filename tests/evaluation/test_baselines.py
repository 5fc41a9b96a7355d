"""Baselines of GAD's size and the on-object control, on tiny masks with known answers."""

import numpy as np
import pytest
from scipy import ndimage

from gadlib.evaluation.baselines import foreground, on_object_blobs, random_subset_mask, top_n_mask


def test_top_n_keeps_the_largest_values_and_never_a_zero():
    importance = np.array([[0.0, 5.0, 1.0], [3.0, 0.0, 4.0]])
    assert top_n_mask(importance, 2).tolist() == [[False, True, False], [False, False, True]]
    assert top_n_mask(importance, 10).sum() == 4  # only the positive pixels
    assert not top_n_mask(importance, 0).any()


def test_top_n_breaks_ties_in_raster_order():
    assert top_n_mask(np.ones((2, 2)), 3).tolist() == [[True, True], [True, False]]


def test_random_subset_draws_inside_the_significant_set():
    significant = np.zeros((6, 6), dtype=bool)
    significant[1:4, 1:4] = True
    rng = np.random.default_rng(0)
    draws = [random_subset_mask(significant, 4, rng) for _ in range(30)]
    assert all(d.sum() == 4 and not (d & ~significant).any() for d in draws)
    assert len({d.tobytes() for d in draws}) > 20  # really random
    assert random_subset_mask(significant, 99, rng).sum() == 9


def test_foreground_is_what_a_black_fill_changes():
    image = np.zeros((1, 3, 3))
    image[0, 1, 1] = 0.2
    assert foreground(image).tolist() == [[False] * 3, [False, True, False], [False] * 3]


def test_blobs_match_area_and_components_and_stay_on_the_object():
    reference = np.zeros((10, 10), dtype=bool)
    reference[0, 0:3] = True  # a component of 3
    reference[5, 5] = True  # and one of 1
    allowed = np.zeros((10, 10), dtype=bool)
    allowed[2:9, 2:9] = True
    for seed in range(20):
        blobs = on_object_blobs(reference, allowed, np.random.default_rng(seed))
        assert blobs.sum() == 4 and not (blobs & ~allowed).any()
        sizes = sorted(np.bincount(ndimage.label(blobs, structure=np.ones((3, 3)))[0].ravel())[1:])
        assert sum(sizes) == 4  # touching blobs may merge, their pixels still add up


def test_blobs_restart_when_the_object_is_split():
    reference = np.zeros((5, 5), dtype=bool)
    reference[0, :4] = True  # one component of 4
    allowed = np.zeros((5, 5), dtype=bool)
    allowed[0, 0] = allowed[4, 4] = allowed[2, 2] = allowed[2, 3] = True  # no 4 connected pixels
    blobs = on_object_blobs(reference, allowed, np.random.default_rng(0))
    assert blobs.sum() == 4 and (blobs == allowed).all()


def test_blobs_are_seeded_and_empty_reference_gives_nothing():
    reference = np.eye(8, dtype=bool)
    allowed = np.ones((8, 8), dtype=bool)
    one = on_object_blobs(reference, allowed, np.random.default_rng(3))
    assert (one == on_object_blobs(reference, allowed, np.random.default_rng(3))).all()
    assert not on_object_blobs(np.zeros((8, 8), dtype=bool), allowed, np.random.default_rng(0)).any()


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        top_n_mask(np.ones((2, 2, 2)), 1)
    with pytest.raises(ValueError, match="one shape"):
        on_object_blobs(np.ones((2, 2), bool), np.ones((3, 3), bool), np.random.default_rng(0))
