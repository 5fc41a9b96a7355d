"""Agreement of the binarised maps against independence, on masks with a known answer."""

import numpy as np
import pytest

from gadlib.evaluation.agreement import agreement_distribution


def test_identical_maps_agree_everywhere_they_keep_a_pixel():
    one = np.zeros((1, 2, 10, 10), dtype=bool)
    one[:, :, :, :1] = True  # each map keeps 10% of the pixels
    result = agreement_distribution(np.repeat(one, 3, axis=0))
    assert result["observed"] == pytest.approx([0.9, 0, 0, 0.1])
    assert result["independent"] == pytest.approx([0.9**3, 3 * 0.9**2 * 0.1, 3 * 0.9 * 0.01, 0.001])


def test_disjoint_maps_never_agree():
    masks = np.zeros((2, 1, 2, 2), dtype=bool)
    masks[0, 0, 0, 0] = masks[1, 0, 1, 1] = True
    result = agreement_distribution(masks)
    assert result["observed"] == pytest.approx([0.5, 0.5, 0.0])
    assert result["independent"][2] == pytest.approx(0.25 * 0.25)


def test_random_independent_maps_match_the_model():
    rng = np.random.default_rng(0)
    masks = rng.random((4, 20, 32, 32)) < 0.3
    result = agreement_distribution(masks)
    assert np.allclose(result["observed"], result["independent"], atol=0.01)
    assert sum(result["observed"]) == pytest.approx(1) and sum(result["independent"]) == pytest.approx(1)


def test_bad_shape():
    with pytest.raises(ValueError, match=r"\(M, N, H, W\)"):
        agreement_distribution(np.zeros((3, 4, 4), dtype=bool))
