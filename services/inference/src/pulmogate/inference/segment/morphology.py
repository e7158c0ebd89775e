"""Ellipsoid morphology of (z, y, x) masks on ONNX Runtime, in slabs of slices."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pulmogate.inference.segment.onnx_runtime import cached_session, releasing_run_options
from pulmogate.inference.segment.qct_graph import (
    Ellipsoid,
    build_geodesic_graph,
    build_morphology_graph,
)

SLAB = 64  # slices per run at least, plus the halo the steps reach in z (4 halos at least)


class Morphology:
    """Dilations, erosions, openings and closings by ellipsoids (one session per recipe)."""

    def __init__(self, providers: str = "auto") -> None:
        self.providers = providers

    def run(self, mask: np.ndarray, steps: Sequence[tuple[str, Ellipsoid]]) -> np.ndarray:
        """The steps applied in order to ``mask`` (bool or grey); float32 result.

        Outside the array never erodes and never dilates; slabs overlap by the steps'
        total reach in z, so they give the same result as the whole array at once.
        """
        steps = tuple(steps)
        key = "qct-morph-" + "+".join(f"{kind}{e.key}" for kind, e in steps)
        session = cached_session(key, lambda: build_morphology_graph(steps), self.providers)
        halo = sum(e.rz for _, e in steps)
        nz = mask.shape[0]
        out = np.empty(mask.shape, np.float32)
        slab = max(SLAB, 4 * halo)
        for start in range(0, nz, slab):
            stop = min(start + slab, nz)
            lo, hi = max(start - halo, 0), min(stop + halo, nz)
            feed = np.ascontiguousarray(mask[lo:hi], dtype=np.float32)[None, None]
            result = session.run(["out"], {"mask": feed}, releasing_run_options())[0]
            out[start:stop] = result[0, 0, start - lo : stop - lo]
        return out

    def dilate(self, mask: np.ndarray, element: Ellipsoid) -> np.ndarray:
        return self.run(mask, [("dilate", element)]) > 0.5

    def erode(self, mask: np.ndarray, element: Ellipsoid) -> np.ndarray:
        return self.run(mask, [("erode", element)]) > 0.5

    def open(self, mask: np.ndarray, element: Ellipsoid) -> np.ndarray:
        return self.run(mask, [("erode", element), ("dilate", element)]) > 0.5

    def close(self, mask: np.ndarray, element: Ellipsoid) -> np.ndarray:
        """Closing with background beyond the array (so it never grows toward the edges)."""
        pad = ((element.rz, element.rz), (max(element.radii),) * 2, (max(element.radii),) * 2)
        padded = np.pad(mask, pad)
        closed = self.run(padded, [("dilate", element), ("erode", element)]) > 0.5
        return closed[tuple(slice(p[0], p[0] + n) for p, n in zip(pad, mask.shape, strict=True))]

    def dilate_labels(self, labels: np.ndarray, element: Ellipsoid) -> np.ndarray:
        """Grey dilation of integer labels (< 2**24): the largest label within reach."""
        return np.rint(self.run(labels, [("dilate", element)])).astype(np.int64)

    def grow(
        self, mask: np.ndarray, allowed: np.ndarray, element: Ellipsoid, steps: int
    ) -> np.ndarray:
        """Geodesic dilation: ``steps`` dilations by ``element`` kept inside ``allowed`` (the
        whole array in one run: the reach along z is not bounded by a slab)."""
        if steps <= 0:
            return mask.astype(bool)
        session = cached_session(
            f"qct-geodesic-{element.key}x{steps}",
            lambda: build_geodesic_graph(element, steps),
            self.providers,
        )
        feeds = {
            "mask": np.ascontiguousarray(mask, dtype=np.float32)[None, None],
            "allowed": np.ascontiguousarray(allowed, dtype=np.float32)[None, None],
        }
        return session.run(["out"], feeds, releasing_run_options())[0][0, 0] > 0.5
