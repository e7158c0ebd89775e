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

    Each slice is padded with a one-pixel ring of background and the slices are stacked
    into one tall 2D image, so background can only reach the outside within its own slice.
    """
    nz, ny, nx = mask.shape
    background = np.ones((nz, ny + 2, nx + 2), bool)
    background[:, 1:-1, 1:-1] = ~mask
    labels = cc3d.connected_components(background.reshape(nz * (ny + 2), nx + 2), connectivity=4)
    outside = labels[0, 0]
    holes = (labels != outside) & (labels > 0)
    return mask | holes.reshape(nz, ny + 2, nx + 2)[:, 1:-1, 1:-1]


def bounding_box(mask: np.ndarray, margin: tuple[int, int, int]) -> tuple[slice, ...]:
    """Slices of the box around ``mask``'s voxels, grown by ``margin`` and clipped to the array."""
    box = []
    for axis, pad in enumerate(margin):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return tuple(slice(0, 0) for _ in range(mask.ndim))
        box.append(
            slice(max(int(hits[0]) - pad, 0), min(int(hits[-1]) + pad + 1, mask.shape[axis]))
        )
    return tuple(box)


def remove_small(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Drop 26-connected components smaller than ``min_voxels``."""
    if min_voxels <= 1 or not mask.any():
        return mask
    return cc3d.dust(mask, threshold=min_voxels, connectivity=26, in_place=False)
