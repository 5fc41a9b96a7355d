"""How many of the K + 1 binarised maps keep each pixel, against what independent maps would give.

GAD keeps the pixels that every map keeps. If the K + 1 maps kept their top-q pixels independently
of each other, a pixel would be in all of them with probability about ``(1 - q)^(K+1)`` (1e-6 for
q = 0.9 and K = 5); how far the observed agreement lies above that shows how much the models share,
and an observed share near 0 explains why a method's GAD maps are empty.
"""

from __future__ import annotations

import numpy as np


def agreement_distribution(masks) -> dict[str, list[float]]:
    """Share of pixels kept by exactly 0, 1, ..., M maps: observed, and expected under independence.

    Parameters
    ----------
    masks : (M, N, H, W) bool array, the pixels each of the M maps keeps, for N images
        (``FusionResult.masks``; map 0 is the original's).

    Returns
    -------
    dict with ``observed`` and ``independent``: lists of M + 1 shares (each sums to 1). The
    independent share of each image is the Poisson-binomial distribution of M draws whose
    probabilities are the maps' own kept fractions on that image, averaged over the images.
    """
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
