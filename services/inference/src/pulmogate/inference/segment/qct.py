"""The default qct model: quantitative CT without trained weights.

HU classes and working-grid means (``qct_graph``), the lung finder (``lungs``) and the
lesion finder (``lesions``); the model card ``models/qct.toml`` holds every band and size
with the sources they come from.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import numpy as np

from pulmogate.inference.segment.card import MODELS_DIR, ModelCard, load_card
from pulmogate.inference.segment.grid import WorkingGrid
from pulmogate.inference.segment.lesions import LesionSettings, find_lesions
from pulmogate.inference.segment.lungs import LungSettings, find_lungs, fine_lungs
from pulmogate.inference.segment.morphology import Morphology
from pulmogate.inference.segment.onnx_runtime import cached_session, releasing_run_options
from pulmogate.inference.segment.qct_graph import Bands, FrangiParameters, build_bands_graph

if TYPE_CHECKING:
    from pulmogate.inference.volume import Volume

CARD_PATH = MODELS_DIR / "qct.toml"
BANDS_SLAB = 32  # slices per run of the (in-plane) bands graph
WORKING_PIXEL_MM = 1.5  # finer pixels are averaged in-plane up to about this
WORKING_PIXEL_MM_CEIL = 2  # working pixels of margin on top (pooling blocks at the edge)
BLOCK_ALIGN = 12  # the body box starts at multiples of this many working pixels (coarse blocks)


class QctSegmenter:
    """Lungs and lesions by HU bands, 3-D morphology and vesselness; no trained weights."""

    def __init__(self, providers: str = "auto", card: ModelCard | None = None) -> None:
        self.model_card = card or load_card(CARD_PATH)
        self.name = self.model_card.name
        self.version = self.model_card.version
        self.card = str(self.model_card.path)
        self.providers = providers
        raw = self.model_card.raw
        self.bands = Bands.from_card(raw.get("bands_hu", {}))
        self.lung_settings = _settings(LungSettings, raw.get("lungs", {}))
        lesion_table = dict(raw.get("lesion_finder", {}))
        frangi = _settings(FrangiParameters, lesion_table.pop("frangi", {}))
        self.lesion_settings = _settings(LesionSettings, lesion_table, frangi=frangi)
        self.working_pixel_mm = float(
            raw.get("input", {}).get("working_pixel_mm", WORKING_PIXEL_MM)
        )
        self.morphology = Morphology(providers)

    def warm_up(self) -> None:
        """Create the bands session and run it once on a small block of air and tissue."""
        block = np.full((2, 16, 16), -1000, np.int16)
        block[:, 4:12, 4:12] = 40
        self._bands(block, 1)

    def segment(self, volume: Volume) -> tuple[np.ndarray, np.ndarray]:
        """Return (lungs, lesions) uint8 masks shaped like the volume.

        The work runs on the in-plane box around the dense (body and table) voxels with a
        margin wider than every in-plane reach, so air around the patient (often half the
        field of view) is skipped.
        """
        lungs = np.zeros(volume.hu.shape, np.uint8)
        lesions = np.zeros(volume.hu.shape, np.uint8)
        grid = WorkingGrid.for_volume(volume.hu.shape, volume.spacing, self.working_pixel_mm)
        box = _dense_box(
            volume.hu,
            self.bands.body_above,
            self._margin_px(volume.spacing),
            align=grid.factor * BLOCK_ALIGN,
        )
        if box is None:
            return lungs, lesions
        lungs[box], lesions[box] = self._segment_box(volume.hu[box], volume)
        return lungs, lesions

    def lesions_in(self, volume: Volume, lungs: np.ndarray) -> np.ndarray:
        """Lesions inside lungs found by another model (its lung labels, qct's lesions)."""
        grid = WorkingGrid.for_volume(volume.hu.shape, volume.spacing, self.working_pixel_mm)
        classes, mean_hu, _ = self._bands(volume.hu, grid.factor)
        share = grid.pool_share(lungs > 0)
        grid_lungs = (share >= 0.5).astype(np.uint8)
        return find_lesions(
            classes,
            lungs,
            mean_hu,
            grid_lungs,
            grid,
            self.bands,
            self.lesion_settings,
            self.morphology,
            self.providers,
        )

    def _margin_px(self, spacing: tuple[float, float, float]) -> int:
        """In-plane pixels of air to keep around the body: more than the reach of the
        operations on the body itself (its opening, the near-surface band); everything
        else works inside the body."""
        reach_mm = max(self.lung_settings.surface_mm, self.lung_settings.body_opening_mm) + 6.0
        return math.ceil(reach_mm / min(spacing[1], spacing[2])) + 2 * WORKING_PIXEL_MM_CEIL

    def _segment_box(self, hu: np.ndarray, volume: Volume) -> tuple[np.ndarray, np.ndarray]:
        """(lungs, lesions) of ``hu``, a box of ``volume`` that holds all of the body."""
        grid = WorkingGrid.for_volume(hu.shape, volume.spacing, self.working_pixel_mm)
        classes, mean_hu, dense = self._bands(hu, grid.factor)
        right_is_low_x = volume.orientation[0] >= 0 if volume.orientation else True
        grid_lungs = find_lungs(
            mean_hu, dense, grid, self.bands, self.lung_settings, self.morphology, right_is_low_x
        )
        lungs = fine_lungs(grid_lungs, classes, grid, self.morphology)
        lesions = find_lesions(
            classes,
            lungs,
            mean_hu,
            grid_lungs,
            grid,
            self.bands,
            self.lesion_settings,
            self.morphology,
            self.providers,
        )
        return lungs, lesions

    def _bands(self, hu: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the bands graph in slabs: fine HU classes, working-grid mean HU and dense share."""
        bands = self.bands
        session = cached_session(
            f"qct-bands-{bands.key}-{factor}",
            lambda: build_bands_graph(bands, factor),
            self.providers,
        )
        nz, ny, nx = hu.shape
        classes = np.empty(hu.shape, np.uint8)
        grid_shape = (nz, -(-ny // factor), -(-nx // factor))
        mean_hu = np.empty(grid_shape, np.float32)
        dense = np.empty(grid_shape, np.float32)
        # Slices go in as channels: onnxruntime spreads pooling over channels (its threads).
        for start in range(0, nz, BANDS_SLAB):
            stop = min(start + BANDS_SLAB, nz)
            slab = hu[start:stop][None, :, None].astype(np.float32)
            out = session.run(["classes", "mean", "dense"], {"hu": slab}, releasing_run_options())
            classes[start:stop] = out[0][0, :, 0]
            mean_hu[start:stop] = out[1][0, :, 0]
            dense[start:stop] = out[2][0, :, 0]
        return classes, mean_hu, dense


def _settings(kind: type, table: dict[str, Any], **extra: Any) -> Any:
    """A settings dataclass from a card table: known keys only, tuples kept as tuples."""
    known = {f.name for f in fields(kind)}
    unknown = set(table) - known
    if unknown:
        raise ValueError(f"unknown model card keys for {kind.__name__}: {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    return kind(**values, **extra)


def _dense_box(
    hu: np.ndarray, above: float, margin: int, align: int = 1
) -> tuple[slice, ...] | None:
    """All slices, and the rows and columns around voxels denser than ``above`` plus
    ``margin`` pixels, starting at multiples of ``align``; None when there are none."""
    rows = np.zeros(hu.shape[1], bool)
    cols = np.zeros(hu.shape[2], bool)
    for start in range(0, hu.shape[0], BANDS_SLAB):  # one slab of booleans at a time
        dense = hu[start : start + BANDS_SLAB] > above
        rows |= dense.any(axis=(0, 2))
        cols |= dense.any(axis=(0, 1))
    if not rows.any():
        return None
    y, x = np.flatnonzero(rows), np.flatnonzero(cols)
    y0, x0 = max(int(y[0]) - margin, 0), max(int(x[0]) - margin, 0)
    return (
        slice(0, hu.shape[0]),
        slice(y0 - y0 % align, min(int(y[-1]) + margin + 1, hu.shape[1])),
        slice(x0 - x0 % align, min(int(x[-1]) + margin + 1, hu.shape[2])),
    )
