"""The default qct model: physics-based quantitative CT (HU bands, morphology, components)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cc3d
import numpy as np
from scipy import ndimage

from pulmogate.inference.segment.card import MODELS_DIR, ModelCard, load_card
from pulmogate.inference.segment.masks import (
    bounding_box,
    fill_holes_slicewise,
    largest_component,
    remove_small,
)
from pulmogate.inference.segment.onnx_runtime import cached_session
from pulmogate.inference.segment.qct_graph import (
    Bands,
    build_bands_graph,
    build_lung_growth_graph,
    build_near_outside_graph,
)

if TYPE_CHECKING:
    from pulmogate.inference.volume import Volume

CARD_PATH = MODELS_DIR / "qct.toml"
BANDS_SLAB = 32  # slices per run of the (in-plane) bands graph
AIRWAY_MAX_SHARE = 0.05  # a dark component touching an end slice is an airway if this small


@dataclass
class QctSettings:
    """Tunable sizes of the qct model, in millimetres."""

    closing_mm: tuple[float, float, float] = (10.0, 20.0, 20.0)  # (z, y, x) half-widths
    growth_mm: float = 28.0  # geodesic growth into lesion-like tissue, in-plane
    growth_step_mm: float = 2.8  # in-plane reach of one geodesic step (one slice in z)
    surface_mm: float = 5.0  # lesion-like tissue this close to the skin is fat, not lung
    min_ggo_mm3: float = 20.0
    min_consolidation_mm3: float = 30.0
    min_lung_part_share: float = 0.01  # smaller air components are not lung


class QctSegmenter:
    """Lungs from the aerated region, lesions from Lung CT Analyzer HU bands; no trained weights."""

    def __init__(
        self,
        providers: str = "auto",
        settings: QctSettings | None = None,
        card: ModelCard | None = None,
    ) -> None:
        self.model_card = card or load_card(CARD_PATH)
        self.name = self.model_card.name
        self.version = self.model_card.version
        self.card = str(self.model_card.path)
        self.providers = providers
        self.settings = settings or _settings_from(self.model_card)
        self.bands = Bands.from_card(self.model_card.raw.get("bands_hu", {}))

    def warm_up(self) -> None:
        """Create the bands session and run it once on a small block of air and tissue."""
        block = np.full((2, 16, 16), -1000, np.int16)
        block[:, 4:12, 4:12] = 40
        self._bands(block)

    def lesions_in(self, volume: Volume, lungs: np.ndarray) -> np.ndarray:
        """Ground-glass and consolidation by HU bands inside given lungs (for other models)."""
        return self._lesions(lungs, self._bands(volume.hu), volume.spacing)

    def segment(self, volume: Volume) -> tuple[np.ndarray, np.ndarray]:
        """Return (lungs, lesions) uint8 masks shaped like the volume."""
        hu = volume.hu
        bands = self._bands(hu)
        body = _body(bands["body"])
        air = bands["air"] & body
        airway = _airways(bands["dark"] & body, int(np.count_nonzero(air)))
        candidates = air & ~airway
        right_is_low_x = volume.orientation[0] >= 0 if volume.orientation else True
        lungs, split = _split_lungs(
            candidates, body, self.settings.min_lung_part_share, right_is_low_x
        )
        allowed = _away_from_surface(
            (bands["ggo"] | bands["consolidation"]) & body & ~airway,
            self._near_surface(body, volume.spacing),
        )
        lungs = self._grow(lungs, allowed, volume.spacing, split, right_is_low_x)
        lesions = self._lesions(lungs, bands, volume.spacing)
        return lungs, lesions

    def _bands(self, hu: np.ndarray) -> dict[str, np.ndarray]:
        """Run the bands graph: air, dark air, body, ground-glass and consolidation masks."""
        bands = self.bands
        session = cached_session(
            f"qct-bands-{bands.key}", lambda: build_bands_graph(bands), self.providers
        )
        names = [o.name for o in session.get_outputs()]
        out = {n: np.empty(hu.shape, bool) for n in names}
        # Every operation of the bands graph is in-plane, so slabs of slices give the
        # same masks as the whole volume, with a fraction of the float32 working memory.
        for start in range(0, hu.shape[0], BANDS_SLAB):
            slab = hu[start : start + BANDS_SLAB][None, None].astype(np.float32)
            values = session.run(names, {"hu": slab})
            for name, value in zip(names, values, strict=True):
                out[name][start : start + BANDS_SLAB] = value[0, 0]
        return out

    def _near_surface(self, body: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
        """Voxels within ``surface_mm`` (in-plane) of the outside of the body."""
        radius = max(1, round(self.settings.surface_mm / spacing[2]))
        size = 2 * radius + 1
        session = cached_session(
            f"qct-near-outside-{size}", lambda: build_near_outside_graph(size), self.providers
        )
        out = np.empty(body.shape, bool)
        for start in range(0, body.shape[0], BANDS_SLAB):
            slab = body[start : start + BANDS_SLAB][None, None].astype(np.float32)
            out[start : start + BANDS_SLAB] = session.run(["near"], {"body": slab})[0][0, 0]
        return out

    def _grow(
        self,
        lungs: np.ndarray,
        allowed: np.ndarray,
        spacing: tuple[float, float, float],
        split: float,
        right_is_low_x: bool,
    ) -> np.ndarray:
        """Grow the lungs into lesion-like tissue (closing, then geodesic steps); fill holes.

        This reaches juxta-pleural and confluent lesions that the aerated region misses;
        only voxels in the ground-glass or consolidation bands are added, so chest wall,
        heart and bone (all above 0 HU) stay out. Vessels are enclosed holes and filled.
        Added voxels take the label of their side of the split between the lungs.
        """
        if not lungs.any():
            return lungs
        radius = tuple(
            max(1, round(mm / s)) for mm, s in zip(self.settings.closing_mm, spacing, strict=True)
        )
        kernel = (2 * radius[0] + 1, 2 * radius[1] + 1, 2 * radius[2] + 1)
        step_px = max(1, round(self.settings.growth_step_mm / spacing[2]))
        steps = max(1, math.ceil(self.settings.growth_mm / (step_px * spacing[2])))
        step_kernel = (3, 2 * step_px + 1, 2 * step_px + 1)
        reach = (
            radius[0] + steps + 1,
            radius[1] + step_px * steps + 1,
            radius[2] + step_px * steps + 1,
        )
        session = cached_session(
            f"qct-lung-growth-{kernel}-{steps}x{step_kernel}",
            lambda: build_lung_growth_graph(kernel, steps, step_kernel),
            self.providers,
        )
        # Each lung in its own box: half the working memory of one box around both, and
        # no closing across the mediastinum.
        grown_all = np.zeros(lungs.shape, bool)
        for side in (1, 2):
            part = lungs == side
            if not part.any():
                continue
            part_box = bounding_box(part, reach)
            feeds = {
                "mask": part[part_box][None, None].astype(np.float32),
                "allowed": allowed[part_box][None, None].astype(np.float32),
            }
            grown_all[part_box] |= session.run(["grown"], feeds)[0][0, 0]
        box = bounding_box(lungs > 0, reach)
        crop = lungs[box]
        grown = grown_all[box]
        x = np.arange(box[2].start, box[2].stop)
        low_side = (x < split)[None, None, :]
        added = grown & (crop == 0)
        right_side = low_side if right_is_low_x else ~low_side
        right = fill_holes_slicewise((crop == 1) | (added & right_side))
        left = fill_holes_slicewise((crop == 2) | (added & ~right_side)) & ~right
        out = np.zeros_like(lungs)
        region = out[box]
        region[left] = 2
        region[right] = 1
        return out

    def _lesions(
        self, lungs: np.ndarray, bands: dict[str, np.ndarray], spacing: tuple[float, float, float]
    ) -> np.ndarray:
        """Ground-glass (1) and consolidation (2) inside the lungs, small specks dropped."""
        voxel_mm3 = float(np.prod(spacing))
        inside = lungs > 0
        ggo = remove_small(bands["ggo"] & inside, math.ceil(self.settings.min_ggo_mm3 / voxel_mm3))
        consolidation = remove_small(
            bands["consolidation"] & inside,
            math.ceil(self.settings.min_consolidation_mm3 / voxel_mm3),
        )
        lesions = np.zeros(lungs.shape, np.uint8)
        lesions[ggo] = 1
        lesions[consolidation] = 2
        return lesions


def _settings_from(card: ModelCard) -> QctSettings:
    """QctSettings from the card's [lungs] and [grading] tables (defaults where absent)."""
    lungs = card.raw.get("lungs", {})
    grading = card.raw.get("grading", {})
    default = QctSettings()
    closing = [float(v) for v in lungs.get("closing_mm", default.closing_mm)]
    return QctSettings(
        closing_mm=(closing[0], closing[1], closing[2]),
        growth_mm=float(lungs.get("growth_mm", default.growth_mm)),
        growth_step_mm=float(lungs.get("growth_step_mm", default.growth_step_mm)),
        surface_mm=float(lungs.get("surface_mm", default.surface_mm)),
        min_ggo_mm3=float(grading.get("min_ground_glass_mm3", default.min_ggo_mm3)),
        min_consolidation_mm3=float(
            grading.get("min_consolidation_mm3", default.min_consolidation_mm3)
        ),
        min_lung_part_share=float(lungs.get("min_part_share", default.min_lung_part_share)),
    )


def _away_from_surface(allowed: np.ndarray, near_surface: np.ndarray) -> np.ndarray:
    """Drop the lesion-like regions that come near the body surface: subcutaneous and
    chest-wall fat (about -100 HU, inside the consolidation band) is not lung to grow into."""
    if not allowed.any():
        return allowed
    labels = cc3d.connected_components(allowed, connectivity=6)
    touching = np.unique(labels[near_surface & allowed])
    lut = np.ones(int(labels.max()) + 1, bool)
    lut[0] = False
    lut[touching[touching > 0]] = False
    return lut[labels]


def _body(dense: np.ndarray) -> np.ndarray:
    """The patient: the largest component denser than fat-air mix, holes filled per slice."""
    return fill_holes_slicewise(largest_component(dense))


def _airways(dark: np.ndarray, air_voxels: int) -> np.ndarray:
    """Trachea and main bronchi: small dark-air components touching the first or last slice."""
    airway = np.zeros(dark.shape, bool)
    if not dark.any():
        return airway
    labels = cc3d.connected_components(dark, connectivity=6)
    ends = np.union1d(np.unique(labels[0]), np.unique(labels[-1]))
    ends = ends[ends > 0]
    if ends.size == 0:
        return airway
    counts = np.bincount(labels.ravel())
    small = ends[counts[ends] <= AIRWAY_MAX_SHARE * max(air_voxels, 1)]
    lut = np.zeros(int(labels.max()) + 1, bool)
    lut[small] = True
    airway = lut[labels]
    if airway.any():
        box = bounding_box(airway, (1, 1, 1))
        airway[box] = ndimage.binary_dilation(airway[box], iterations=1)
    return airway


def _split_lungs(
    candidates: np.ndarray, body: np.ndarray, min_share: float, right_is_low_x: bool
) -> tuple[np.ndarray, float]:
    """Label aerated components 1 (right lung) or 2 (left); return the labels and the split x.

    Two separate lungs are told apart by their centroids; one joined component (lungs
    touching at the front or back) is cut at the narrowest x in its middle third.
    """
    lungs = np.zeros(candidates.shape, np.uint8)
    if not candidates.any():
        return lungs, candidates.shape[2] / 2
    labels = cc3d.connected_components(candidates, connectivity=6)
    stats = cc3d.statistics(labels)
    sizes = np.asarray(stats["voxel_counts"])[1:]
    centroids = np.asarray(stats["centroids"])[1:]
    order = np.argsort(sizes)[::-1]
    largest = int(order[0])
    kept = [int(i) for i in order if sizes[i] >= min_share * sizes[largest]]
    body_x = np.flatnonzero(body.any(axis=(0, 1)))
    mid_body = 0.5 * (body_x[0] + body_x[-1]) if body_x.size else candidates.shape[2] / 2
    width = (body_x[-1] - body_x[0]) if body_x.size else candidates.shape[2]
    box = stats["bounding_boxes"][largest + 1]
    main_lo, main_hi = box[2].start, box[2].stop - 1
    joined = main_lo < mid_body - 0.1 * width and main_hi > mid_body + 0.1 * width
    if joined:
        profile = (labels[box] == largest + 1).sum(axis=(0, 1))
        third = (main_hi - main_lo) // 3
        middle = profile[third : len(profile) - third]
        split = float(main_lo + third + int(np.argmin(middle)) if middle.size else mid_body)
    elif len(kept) > 1:
        split = 0.5 * (centroids[kept[0]][2] + centroids[kept[1]][2])
    else:
        split = float(mid_body)
    low_label, high_label = (1, 2) if right_is_low_x else (2, 1)
    if joined:
        member = np.zeros(len(sizes) + 1, bool)
        member[np.asarray(kept) + 1] = True
        in_lung = member[labels]
        low_side = (np.arange(candidates.shape[2]) < split)[None, None, :]
        lungs[in_lung & low_side] = low_label
        lungs[in_lung & ~low_side] = high_label
    else:
        lut = np.zeros(len(sizes) + 1, np.uint8)
        for i in kept:
            lut[i + 1] = low_label if centroids[i][2] < split else high_label
        lungs = lut[labels]
    return lungs, split
