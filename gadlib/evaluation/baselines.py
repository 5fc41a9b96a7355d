"""Baselines of a GAD map's size (n pixels per image) and an on-object random control: what makes RC and
RS claims falsifiable when RC <= 1 holds by construction (docs/method.md).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from gadlib.evaluation.regions import EIGHT_CONNECTED

_FOUR_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def top_n_mask(importance: np.ndarray, n: int) -> np.ndarray:
    """(H, W) bool mask of the ``n`` >= 0 most important pixels of one (H, W) non-negative map, positive
    ones only; ties broken in raster order."""
    importance = np.asarray(importance, dtype=np.float64)
    if importance.ndim != 2:
        raise ValueError(f"importance must be one (H, W) map; got shape {importance.shape}")
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    flat = importance.ravel()
    order = np.argsort(-flat, kind="stable")[:n]
    keep = np.zeros(flat.shape, dtype=bool)
    keep[order[flat[order] > 0]] = True
    return keep.reshape(importance.shape)


def random_subset_mask(significant: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W) bool mask of ``n`` pixels drawn by ``rng`` uniformly, without replacement, from the (H, W)
    bool ``significant`` pixels (all of them when there are fewer)."""
    significant = np.asarray(significant, dtype=bool)
    if significant.ndim != 2:
        raise ValueError(f"significant must be one (H, W) mask; got shape {significant.shape}")
    candidates = np.flatnonzero(significant)
    chosen = rng.choice(candidates, size=min(n, candidates.size), replace=False)
    keep = np.zeros(significant.size, dtype=bool)
    keep[chosen] = True
    return keep.reshape(significant.shape)


def foreground(image: np.ndarray) -> np.ndarray:
    """(H, W) bool mask of the object in a (C, H, W) image in [0, 1]: pixels above 0 in some channel
    (what a black fill changes; Fashion-MNIST's garment without its background)."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must have shape (C, H, W); got {image.shape}")
    return (image > 0).any(axis=0)


def on_object_blobs(reference: np.ndarray, allowed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random regions with the pixel count and component sizes of ``reference`` (an (H, W) bool mask, e.g.
    GAD's raster), grown inside ``allowed`` (e.g. :func:`foreground`): an (H, W) bool mask of
    ``min(reference.sum(), allowed.sum())`` pixels.

    For each 8-connected component (largest first), a seed drawn uniformly from the free allowed pixels
    grows by uniformly drawn free 4-neighbours to the component's size, re-seeding when it cannot grow.
    """
    reference, allowed = np.asarray(reference, dtype=bool), np.asarray(allowed, dtype=bool)
    if reference.shape != allowed.shape or reference.ndim != 2:
        raise ValueError(
            f"reference and allowed must be (H, W) masks of one shape; got {reference.shape} and {allowed.shape}"
        )
    labels, count = ndimage.label(reference, structure=EIGHT_CONNECTED)
    sizes = sorted(np.bincount(labels.ravel())[1:].tolist(), reverse=True) if count else []
    height, width = reference.shape
    free = allowed.copy()
    out = np.zeros_like(reference)
    for size in sizes:
        region: list[tuple[int, int]] = []
        frontier: set[tuple[int, int]] = set()
        while len(region) < size and free.any():
            if not frontier:  # start (or restart) from a random free pixel
                seeds = np.flatnonzero(free)
                r, c = divmod(int(rng.choice(seeds)), width)
            else:
                r, c = sorted(frontier)[int(rng.integers(len(frontier)))]  # sorted: draws do not depend on set order
                frontier.discard((r, c))
                if not free[r, c]:
                    continue
            free[r, c], out[r, c] = False, True
            region.append((r, c))
            for dr, dc in _FOUR_NEIGHBOURS:
                rr, cc = r + dr, c + dc
                if 0 <= rr < height and 0 <= cc < width and free[rr, cc]:
                    frontier.add((rr, cc))
    return out
