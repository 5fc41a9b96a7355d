"""Binary importance mask -> groups of pixels -> convex-hull polygons -> complexity (docs/method.md).
Polygons are in pixel-edge coordinates: pixel ``(r, c)`` is the unit square ``x in [c, c+1], y in [r, r+1]``,
and belongs to a rasterised polygon when its centre lies inside it or on its boundary.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple, Sequence

import numpy as np
import shapely
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from shapely.geometry import Polygon

from gadlib.common.checks import check_mask

# 8-connectivity: pixels touching by an edge or a corner are neighbours.
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


class HullComplexity(NamedTuple):
    """Complexity of one map's region set: ``fraction``, the area of the hull polygons' union over H * W
    (lower = the map points at less; 0.0 when empty); ``n_regions``, the number of polygons;
    ``area_pixels``, the union's area in pixels."""

    fraction: float
    n_regions: int
    area_pixels: float


def _check_shape(shape) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (H, W), two positive integers; got {shape!r}") from None
    if height <= 0 or width <= 0:
        raise ValueError(f"shape must be (H, W), two positive integers; got {shape!r}")
    return height, width


def _grouped_pixels(mask, dilation, min_pixels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kept pixels sorted by group: (rows, cols, group index 0..G-1), each of shape (k,)."""
    arr = check_mask(mask)
    if isinstance(dilation, bool) or not isinstance(dilation, (int, np.integer)) or dilation < 0:
        raise ValueError(f"dilation must be an integer >= 0 (pixels); got {dilation!r}")
    if isinstance(min_pixels, bool) or not isinstance(min_pixels, (int, np.integer)) or min_pixels < 1:
        raise ValueError(f"min_pixels must be an integer >= 1; got {min_pixels!r}")
    empty = np.zeros(0, dtype=np.int64)
    if not arr.any():
        return empty, empty, empty
    grown = (
        ndimage.binary_dilation(arr, structure=np.ones((2 * dilation + 1,) * 2, dtype=bool)) if dilation > 0 else arr
    )
    labels, _ = ndimage.label(grown, structure=EIGHT_CONNECTED)
    rows, cols = np.nonzero(arr)
    owner = labels[rows, cols]
    order = np.argsort(owner, kind="stable")  # stable keeps raster order inside each group
    rows, cols, owner = rows[order], cols[order], owner[order]
    _, group, counts = np.unique(owner, return_inverse=True, return_counts=True)
    keep = counts[group] >= min_pixels
    # Renumber the surviving groups 0..G-1, in order.
    kept_ids = np.flatnonzero(counts >= min_pixels)
    renumber = np.full(counts.shape, -1)
    renumber[kept_ids] = np.arange(kept_ids.size)
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64), renumber[group[keep]]


def group_pixels(mask, dilation: int = 1, min_pixels: int = 1) -> list[np.ndarray]:
    """Group the pixels of an (H, W) binary mask (bool or 0/1; numpy or torch) into regions: the mask's
    pixels in each 8-connected component of the mask dilated by a (2r+1) x (2r+1) square, r = ``dilation``
    >= 0 (bridging gaps of up to 2r pixels); groups of fewer than ``min_pixels`` pixels are dropped.

    Returns one (k_i, 2) int64 array of (row, col) per group (dilation adds no pixel), groups and rows in
    raster order; [] for an empty mask.
    """
    rows, cols, group = _grouped_pixels(mask, dilation, min_pixels)
    if group.size == 0:
        return []
    splits = np.flatnonzero(np.diff(group)) + 1
    return np.split(np.stack([rows, cols], axis=1), splits)


def hull_polygons(mask, dilation: int = 1, min_pixels: int = 1) -> list[Polygon]:
    """The convex hull (a shapely Polygon in pixel-edge coordinates, area >= 1) of each pixel group of an
    (H, W) bool mask (``dilation``, ``min_pixels``: :func:`group_pixels`). Hulls of different groups may
    overlap: areas come from their union (:func:`hull_complexity`, :func:`rasterize`).

    Examples
    --------
    >>> import numpy as np
    >>> from gadlib import hull_polygons
    >>> mask = np.zeros((8, 8), dtype=bool)
    >>> mask[1, 1] = mask[3, 3] = True  # two pixels one pixel apart: one group after dilation by 1
    >>> mask[7, 7] = True  # three pixels further: a group of its own
    >>> [polygon.area for polygon in hull_polygons(mask)]  # hulls of pixel squares: one pixel has area 1
    [5.0, 1.0]
    >>> [polygon.area for polygon in hull_polygons(mask, dilation=0)]  # no dilation: three groups
    [1.0, 1.0, 1.0]
    """
    rows, cols, group = _grouped_pixels(mask, dilation, min_pixels)
    if group.size == 0:
        return []
    # Only each row's leftmost and rightmost pixel of a group can give hull corners: 4 corners per
    # (group, row), all groups at once.
    width = int(cols.max()) + 2
    key = group * (int(rows.max()) + 1) + rows
    uniq, inverse = np.unique(key, return_inverse=True)
    left = np.full(uniq.shape, width, dtype=np.int64)
    right = np.full(uniq.shape, -1, dtype=np.int64)
    np.minimum.at(left, inverse, cols)
    np.maximum.at(right, inverse, cols)
    first = np.unique(inverse, return_index=True)[1]
    row_of, group_of = rows[first], group[first]
    xs = np.concatenate([left, left, right + 1, right + 1]).astype(float)
    ys = np.concatenate([row_of, row_of + 1, row_of, row_of + 1]).astype(float)
    owner = np.tile(group_of, 4)
    order = np.argsort(owner, kind="stable")  # shapely wants the coordinates grouped by index
    # A linestring through a group's corners (any order) has the same convex hull as its points and
    # is built straight from the coordinates (a multipoint would build one Point per corner first).
    outlines = shapely.linestrings(np.stack([xs, ys], axis=1)[order], indices=owner[order])
    return list(shapely.convex_hull(outlines))


def rasterize(polygons: Sequence[Polygon], shape) -> np.ndarray:
    """(H, W) bool raster of the union of shapely polygons (pixel-edge coordinates) for ``shape`` (H, W):
    True where the pixel's centre is inside or on the boundary, so it contains the mask of a hull."""
    height, width = _check_shape(shape)
    out = np.zeros((height, width), dtype=bool)
    polys = np.asarray([p for p in polygons if p is not None and not p.is_empty], dtype=object)
    if polys.size == 0:
        return out
    # Candidate pixels: those whose centre lies in a polygon's bounding box; then one vectorised
    # point-in-polygon test over all (polygon, pixel) candidates.
    x0, y0, x1, y1 = shapely.bounds(polys).T
    c0 = np.maximum(np.ceil(x0 - 0.5), 0).astype(np.int64)
    c1 = np.minimum(np.floor(x1 - 0.5), width - 1).astype(np.int64)
    r0 = np.maximum(np.ceil(y0 - 0.5), 0).astype(np.int64)
    r1 = np.minimum(np.floor(y1 - 0.5), height - 1).astype(np.int64)
    box_w = np.maximum(c1 - c0 + 1, 0)
    box_n = box_w * np.maximum(r1 - r0 + 1, 0)
    owner = np.repeat(np.arange(polys.size), box_n)
    local = np.arange(owner.size) - np.repeat(np.cumsum(box_n) - box_n, box_n)
    rr = r0[owner] + local // box_w[owner]
    cc = c0[owner] + local % box_w[owner]
    inside = shapely.intersects_xy(polys[owner], cc + 0.5, rr + 0.5)  # boundary counts as inside
    out[rr[inside], cc[inside]] = True
    return out


def _union_area(polys: np.ndarray) -> float:
    """Area of the union; only polygons that touch another are passed to the (slow) union."""
    tree = shapely.STRtree(polys)
    a, b = tree.query(polys, predicate="intersects")
    pairs = a < b
    areas = shapely.area(polys)
    if not pairs.any():
        return float(areas.sum())
    graph = coo_matrix((np.ones(int(pairs.sum())), (a[pairs], b[pairs])), shape=(polys.size,) * 2)
    n_comp, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp, minlength=n_comp)
    total = float(areas[sizes[comp] == 1].sum())
    for c in np.flatnonzero(sizes > 1):
        total += float(shapely.union_all(polys[comp == c]).area)
    return total


def hull_complexity(polygons: Sequence[Polygon], shape) -> HullComplexity:
    """The :class:`HullComplexity` of a map's hull ``polygons`` (:func:`hull_polygons`) in an image of
    ``shape`` (H, W): the union's area as a fraction of the image (lower = simpler); 0.0 for no polygon.

    Examples
    --------
    >>> import numpy as np
    >>> from gadlib import hull_complexity, hull_polygons
    >>> mask = np.zeros((8, 8), dtype=bool)
    >>> mask[1, 1] = mask[3, 3] = mask[7, 7] = True
    >>> hull_complexity(hull_polygons(mask), mask.shape)  # hulls cover 6 of the 64 pixels, in 2 regions
    HullComplexity(fraction=0.09375, n_regions=2, area_pixels=6.0)
    >>> hull_complexity([], (8, 8))  # an empty map
    HullComplexity(fraction=0.0, n_regions=0, area_pixels=0.0)
    """
    height, width = _check_shape(shape)
    polys = [p for p in polygons if p is not None and not p.is_empty]
    if not polys:
        return HullComplexity(0.0, 0, 0.0)
    area = _union_area(np.asarray(polys, dtype=object))
    return HullComplexity(area / (height * width), len(polys), area)


def relative_complexity(gad, original):
    """RC = complexity(GAD map) / complexity(original map), float or float64 array like the complexity
    fractions (>= 0) ``gad`` and ``original``; RC < 1: GAD points at less. Where ``original == 0`` RC is
    NaN, with one RuntimeWarning per call giving the count."""
    g = np.asarray(gad, dtype=np.float64)
    o = np.asarray(original, dtype=np.float64)
    if np.any(g < 0) or np.any(o < 0):
        raise ValueError(
            f"complexities must be >= 0; got gad={gad!r}, original={original!r}. Pass HullComplexity.fraction values."
        )
    g, o = np.broadcast_arrays(g, o)
    zero = o == 0
    if zero.any():
        message = f"relative complexity undefined for {int(zero.sum())} of {zero.size} maps whose original "
        message += "map has complexity 0 (no significant region); RC is NaN there"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = np.where(zero, np.nan, g / np.where(zero, 1.0, o))
    return float(rc) if rc.ndim == 0 else rc
