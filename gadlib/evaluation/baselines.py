"""Baselines of the same size as a GAD map, and an on-object random control.

Under the default settings every GAD pixel is one of the original map's significant pixels, so GAD's
regions are never larger than the original's (RC <= 1 by construction). Whether GAD is *more
compact*, or its regions *matter more*, is only a question against baselines that keep as many
pixels as GAD does (n per image):

- :func:`top_n_mask`: the original map's own n most important pixels (a stricter threshold);
- :func:`random_subset_mask`: n pixels drawn at random from the original's significant pixels;
- :func:`on_object_blobs`: random regions of the GAD regions' pixel count and component sizes,
  grown inside the object (the pixels an occlusion can change), never on empty background.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
_FOUR_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def top_n_mask(importance: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` most important pixels of one map (only pixels of positive importance).

    Parameters
    ----------
    importance : (H, W) non-negative array.
    n : number of pixels to keep (>= 0).

    Returns
    -------
    (H, W) bool array with ``min(n, number of positive pixels)`` pixels set; ties are broken in
    raster order, so the result is deterministic.
    """
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
    """``n`` pixels drawn uniformly, without replacement, from a map's significant pixels.

    Parameters
    ----------
    significant : (H, W) bool array, the pixels to draw from.
    n : pixels to draw; all of them when there are fewer.
    rng : numpy Generator.

    Returns
    -------
    (H, W) bool array.
    """
    significant = np.asarray(significant, dtype=bool)
    if significant.ndim != 2:
        raise ValueError(f"significant must be one (H, W) mask; got shape {significant.shape}")
    candidates = np.flatnonzero(significant)
    chosen = rng.choice(candidates, size=min(n, candidates.size), replace=False)
    keep = np.zeros(significant.size, dtype=bool)
    keep[chosen] = True
    return keep.reshape(significant.shape)


def foreground(image: np.ndarray) -> np.ndarray:
    """The object: pixels whose value is above 0 in some channel (what a black fill changes).

    Parameters
    ----------
    image : (C, H, W) array in [0, 1].

    Returns
    -------
    (H, W) bool array. For photographs nearly every pixel is foreground; for Fashion-MNIST the
    garment, without the black background.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must have shape (C, H, W); got {image.shape}")
    return (image > 0).any(axis=0)


def on_object_blobs(reference: np.ndarray, allowed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random regions with the reference's pixel count and component sizes, grown inside ``allowed``.

    For each 8-connected component of ``reference`` (largest first), a seed pixel is drawn uniformly
    from the allowed pixels not yet used, and the region grows one pixel at a time by a uniformly
    drawn 4-neighbour of the region that is allowed and unused, until it has the component's size.
    A region that cannot grow further (its allowed area is used up) continues from a new seed, so
    the total pixel count always matches while enough allowed pixels exist.

    Parameters
    ----------
    reference : (H, W) bool array, e.g. the rasterised GAD regions of one image.
    allowed : (H, W) bool array, e.g. :func:`foreground` of the image.
    rng : numpy Generator.

    Returns
    -------
    (H, W) bool array inside ``allowed``, with ``min(reference.sum(), allowed.sum())`` pixels.
    """
    reference, allowed = np.asarray(reference, dtype=bool), np.asarray(allowed, dtype=bool)
    if reference.shape != allowed.shape or reference.ndim != 2:
        raise ValueError(
            f"reference and allowed must be (H, W) masks of one shape; got {reference.shape} and {allowed.shape}"
        )
    labels, count = ndimage.label(reference, structure=_EIGHT_CONNECTED)
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
