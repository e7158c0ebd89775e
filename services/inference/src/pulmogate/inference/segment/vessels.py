"""Multiscale vesselness (Frangi et al. 1998) of the working grid, on ONNX Runtime."""

from __future__ import annotations

import math

import numpy as np

from pulmogate.inference.segment.onnx_runtime import cached_session, releasing_run_options
from pulmogate.inference.segment.qct_graph import (
    FrangiParameters,
    build_vesselness_graph,
    vesselness_weights,
)

BLUR_SIGMA_PX = 1.15  # blur of each level in its own in-plane pixels (two 3-box passes)
SLAB = 40  # slices per run of the first level (the others are small)


def _passes(spacing: tuple[float, float, float], sigma_px: float) -> tuple[int, int, int]:
    """3-box passes per axis (sigma^2 = 2/3 pixel^2 each) for an isotropic blur of
    ``sigma_px`` in-plane pixels; an axis whose pixels are coarser than twice it gets none."""
    sigma_mm = sigma_px * min(spacing[1], spacing[2])
    return tuple(  # type: ignore[return-value]
        max(1, round(1.5 * (sigma_mm / s) ** 2)) if sigma_mm / s > 0.5 else 0 for s in spacing
    )


def vesselness(
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    levels: int,
    frangi: FrangiParameters,
    providers: str = "auto",
) -> np.ndarray:
    """The largest vesselness over ``levels`` scales (blur sigma about 1.15, 2.3, 4.6 ...
    working pixels), each on a grid halved in-plane from the last; (z, y, x) float32.
    """
    best = np.zeros(hu.shape, np.float32)
    level_hu = hu.astype(np.float32)
    level_spacing = spacing
    factor_z, factor_xy = 1, 1
    for _ in range(levels):
        passes = _passes(level_spacing, BLUR_SIGMA_PX)
        next_xy = level_spacing[1] * 2
        downsample_z = level_spacing[0] * 2 <= 1.5 * next_xy
        session = _level_session(passes, downsample_z, frangi, providers)
        halo = 2 * (passes[0] + 1)
        weights = vesselness_weights(level_spacing, passes)
        values, nxt = _run_in_slabs(session, level_hu, weights, halo, downsample_z)
        up = np.repeat(np.repeat(np.repeat(values, factor_z, 0), factor_xy, 1), factor_xy, 2)
        np.maximum(best, up[: hu.shape[0], : hu.shape[1], : hu.shape[2]], out=best)
        if min(nxt.shape) < 4:
            break
        level_hu = nxt
        factor_xy *= 2
        if downsample_z:
            factor_z *= 2
        level_spacing = (
            level_spacing[0] * (2 if downsample_z else 1),
            level_spacing[1] * 2,
            level_spacing[2] * 2,
        )
    return best


def _level_session(
    passes: tuple[int, int, int], downsample_z: bool, frangi: FrangiParameters, providers: str
) -> object:
    """The cached session of one scale's graph (the spacing comes in as weights)."""
    key = (
        f"qct-vesselness-{'-'.join(map(str, passes))}-{downsample_z}-"
        f"{frangi.alpha:g},{frangi.beta:g},{frangi.c_hu:g}"
    )
    return cached_session(
        key, lambda: build_vesselness_graph(passes, frangi, downsample_z), providers
    )


def _run_in_slabs(
    session: object,
    hu: np.ndarray,
    weights: dict[str, np.ndarray],
    halo: int,
    downsample_z: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Vesselness and the next level of ``hu``, slab by slab (slab starts kept even)."""
    nz = hu.shape[0]
    slab = SLAB if nz > SLAB + 2 * halo else nz
    halo += halo % 2
    parts, nexts = [], []
    for start in range(0, nz, slab):
        stop = min(start + slab, nz)
        lo, hi = max(start - halo, 0), min(stop + halo, nz)
        feed = np.ascontiguousarray(hu[lo:hi])[None, None]
        values, nxt = session.run(  # type: ignore[attr-defined]
            ["vesselness", "next"], {"hu": feed, **weights}, releasing_run_options()
        )
        parts.append(values[0, 0, start - lo : stop - lo])
        zf = 2 if downsample_z else 1
        nexts.append(
            nxt[0, 0, (start - lo) // zf : (start - lo) // zf + math.ceil((stop - start) / zf)]
        )
    return np.concatenate(parts), np.concatenate(nexts)
