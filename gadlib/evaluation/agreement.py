"""How many of the K + 1 binarised maps keep each pixel, against what independent maps would give: a
pixel is in all of them with probability about ``(1 - q)^(K+1)`` (1e-6 for q = 0.9, K = 5) by chance, and
an observed share near 0 explains a method's empty GAD maps.
"""

from __future__ import annotations

import numpy as np


def agreement_distribution(masks) -> dict[str, list[float]]:
    """Share of pixels kept by exactly 0, 1, ..., M of the (M, N, H, W) bool ``masks`` (``FusionResult.masks``):
    ``observed``, and ``independent`` (per image the Poisson-binomial distribution of the maps' kept
    fractions, averaged), two lists of M + 1 shares."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 4 or masks.shape[0] < 1 or masks.shape[1] < 1:
        raise ValueError(f"masks must have shape (M, N, H, W) with M, N >= 1; got {masks.shape}")
    n_maps, n_images = masks.shape[:2]
    counts = masks.sum(axis=0)
    observed = np.bincount(counts.ravel(), minlength=n_maps + 1) / counts.size
    kept = masks.reshape(n_maps, n_images, -1).mean(axis=2)  # (M, N) kept fraction of each map
    independent = np.zeros(n_maps + 1)
    for image in range(n_images):
        distribution = np.array([1.0])
        for p in kept[:, image]:  # convolve one Bernoulli(p) at a time
            distribution = np.convolve(distribution, [1.0 - p, p])
        independent += distribution
    return {"observed": observed.tolist(), "independent": (independent / n_images).tolist()}
