"""Connected-component and hole-filling helpers for binary (z, y, x) masks."""

from __future__ import annotations

import cc3d
import numpy as np


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of ``mask`` (empty if ``mask`` is empty)."""
    if not mask.any():
        return np.zeros_like(mask, dtype=bool)
    return cc3d.largest_k(mask, k=1, connectivity=6) > 0


def fill_holes_slicewise(mask: np.ndarray) -> np.ndarray:
    """Fill every in-plane hole of each axial slice with one 2D labelling of a slice mosaic.

    The work is done in the box around the mask. Each slice is padded with a one-pixel ring
    of background and the slices are stacked into one tall 2D image, so background can only
    reach the outside within its own slice.
    """
    box = bounding_box(mask, (0, 0, 0))  # holes lie inside the mask's box
    filled = mask.copy()
    if not filled[box].size:
        return filled
    part = mask[box]
    nz, ny, nx = part.shape
    background = np.ones((nz, ny + 2, nx + 2), bool)
    background[:, 1:-1, 1:-1] = ~part
    labels = cc3d.connected_components(background.reshape(nz * (ny + 2), nx + 2), connectivity=4)
    outside = labels[0, 0]
    holes = (labels != outside) & (labels > 0)
    filled[box] |= holes.reshape(nz, ny + 2, nx + 2)[:, 1:-1, 1:-1]
    return filled


def bounding_box(mask: np.ndarray, margin: tuple[int, int, int]) -> tuple[slice, ...]:
    """Slices of the box around ``mask``'s voxels, grown by ``margin`` and clipped to the array."""
    if mask.ndim != 3:
        box = []
        for axis, pad in enumerate(margin):
            other = tuple(a for a in range(mask.ndim) if a != axis)
            box.append(_span(np.asarray(mask.any(axis=other)), pad))
        return tuple(box)
    # Two passes over a (z, y, x) mask: per-slice any (contiguous), and the in-plane union.
    plane = np.asarray(mask.any(axis=0))
    return (
        _span(np.asarray(mask.any(axis=(1, 2))), margin[0]),
        _span(np.asarray(plane.any(axis=1)), margin[1]),
        _span(np.asarray(plane.any(axis=0)), margin[2]),
    )


def _span(hits: np.ndarray, pad: int) -> slice:
    """The slice from the first to the last True of ``hits``, grown by ``pad``, clipped."""
    found = np.flatnonzero(hits)
    if found.size == 0:
        return slice(0, 0)
    return slice(max(int(found[0]) - pad, 0), min(int(found[-1]) + pad + 1, hits.size))


def remove_small(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Drop 26-connected components smaller than ``min_voxels``."""
    if min_voxels <= 1 or not mask.any():
        return mask
    return cc3d.dust(mask, threshold=min_voxels, connectivity=26, in_place=False)


def fill_holes_3d(mask: np.ndarray) -> np.ndarray:
    """Fill the background regions that no path in 3-D (6-connected) joins to the outside.

    Unlike ``fill_holes_slicewise``, a region that is enclosed in one slice but continues
    out of the mask in another (the liver under a diaphragm dome, a vessel leaving the lung
    at the hilum) is not a hole.
    """
    box = bounding_box(mask, (0, 0, 0))
    filled = mask.copy()
    part = mask[box]
    if not part.size:
        return filled
    background = np.ones(tuple(s + 2 for s in part.shape), bool)
    background[1:-1, 1:-1, 1:-1] = ~part
    labels = cc3d.connected_components(background, connectivity=6)
    holes = (labels != labels[0, 0, 0])[1:-1, 1:-1, 1:-1]
    filled[box] |= holes
    return filled


def components_touching(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The 6-connected components of ``mask`` that hold at least one ``seeds`` voxel."""
    if not mask.any():
        return np.zeros(mask.shape, bool)
    labels = cc3d.connected_components(mask, connectivity=6)
    hit = np.unique(labels[seeds & mask])
    keep = np.zeros(int(labels.max()) + 1, bool)
    keep[hit[hit > 0]] = True
    return keep[labels]
