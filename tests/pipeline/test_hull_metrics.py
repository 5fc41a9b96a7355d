"""The hull_metrics stage counts GAD's expected conditions instead of warning about them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gadlib.pipeline.hull_metrics import expected_condition_lines, expected_conditions


def per_image_table() -> pd.DataFrame:
    """Two methods × 2 images × the region sets original, gad, rest; Saliency's GAD map empty on image 1."""
    rows = []
    for method in ("IntegratedGradients", "Saliency"):
        for image in (0, 1):
            empty = method == "Saliency" and image == 1
            for region_set in ("original", "gad", "rest", "gad_alpha0"):
                pixels = 0 if empty and region_set == "gad" else 5
                rs = np.nan if empty and region_set in ("gad", "gad_alpha0") else 0.1
                rows.append(dict(method=method, image=image, region_set=region_set, n_pixels=pixels, rs=rs))
    return pd.DataFrame(rows)


def test_expected_conditions_are_counted_per_method_without_the_control():
    counts = expected_conditions(per_image_table())
    assert counts.loc["Saliency"].tolist() == [2, 1, 1]  # the control's undefined RS is not counted
    assert counts.loc["IntegratedGradients"].tolist() == [2, 0, 0]


def test_one_line_of_information_per_method():
    assert expected_condition_lines(per_image_table()) == [
        "IntegratedGradients: GAD map empty on 0 of 2 images; RS undefined for 0 of 6 region sets "
        "(an empty set has no RS)",
        "Saliency: GAD map empty on 1 of 2 images; RS undefined for 1 of 6 region sets (an empty set has no RS)",
    ]
