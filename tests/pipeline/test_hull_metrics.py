"""notebooks/05_hull_metrics.ipynb counts GAD's expected conditions instead of warning about them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.notebooks import notebook_function


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


def test_one_line_of_information_per_method_without_the_control():
    lines = notebook_function("notebooks/05_hull_metrics.ipynb", "expected_condition_lines")(per_image_table())
    assert lines == [  # the control's undefined RS is not counted
        "IntegratedGradients: GAD map empty on 0 of 2 images; RS undefined for 0 of 6 region sets "
        "(an empty set has no RS)",
        "Saliency: GAD map empty on 1 of 2 images; RS undefined for 1 of 6 region sets (an empty set has no RS)",
    ]
