"""The default qct model: physics-based quantitative CT (HU bands, morphology, components)."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
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
from pulmogate.inference.segment.onnx_runtime import cached_session, releasing_run_options
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
    growth_pixel_mm: float = 2.0  # finer pixels are pooled in-plane for the growth (speed)
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
        """Return (lungs, lesions) uint8 masks shaped like the volume.

        The work runs on the in-plane box around the dense (body and table) voxels with a
        margin wider than every in-plane filter, so the masks are the same as on the whole
        slices; air around the patient (often half the field of view) is skipped.
        """
        lungs = np.zeros(volume.hu.shape, np.uint8)
        lesions = np.zeros(volume.hu.shape, np.uint8)
        box = _dense_box(volume.hu, self.bands.body_above, self._margin_px(volume.spacing))
        if box is None:
            return lungs, lesions
        lungs[box], lesions[box] = self._segment_box(volume.hu[box], volume)
        return lungs, lesions

    def _margin_px(self, spacing: tuple[float, float, float]) -> int:
        """In-plane pixels of air to keep around the body: more than any filter's reach
        (closing, near-surface), so cropping changes no mask."""
        reach_mm = max(*self.settings.closing_mm[1:], self.settings.surface_mm)
        return math.ceil(reach_mm / min(spacing[1], spacing[2])) + 2

    def _segment_box(self, hu: np.ndarray, volume: Volume) -> tuple[np.ndarray, np.ndarray]:
        """(lungs, lesions) of ``hu``, a box of ``volume`` that holds all of the body."""
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
        # Each slice goes in as a channel: onnxruntime spreads pooling over channels (its
        # threads), not over z.
        for start in range(0, hu.shape[0], BANDS_SLAB):
            slab = hu[start : start + BANDS_SLAB][None, :, None].astype(np.float32)
            values = session.run(names, {"hu": slab}, releasing_run_options())
            for name, value in zip(names, values, strict=True):
                out[name][start : start + BANDS_SLAB] = value[0, :, 0]
        return out

    def _near_surface(self, body: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
        """Voxels within ``surface_mm`` (in-plane) of the outside of the body."""
        radius = max(1, round(self.settings.surface_mm / spacing[2]))
        size = 2 * radius + 1
        session = cached_session(
            f"qct-near-outside-{size}", lambda: build_near_outside_graph(size), self.providers
        )
        out = np.empty(body.shape, bool)
        for start in range(0, body.shape[0], BANDS_SLAB):  # slices as channels, as in _bands
            slab = body[start : start + BANDS_SLAB][None, :, None].astype(np.float32)
            near = session.run(["near"], {"body": slab}, releasing_run_options())
            out[start : start + BANDS_SLAB] = near[0][0, :, 0]
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
        step_px = max(1, round(self.settings.growth_step_mm / spacing[2]))
        steps = max(1, math.ceil(self.settings.growth_mm / (step_px * spacing[2])))
        factor = _growth_factor(step_px, spacing[2], self.settings.growth_pixel_mm)
        coarse = (spacing[0], spacing[1] * factor, spacing[2] * factor)
        radius = tuple(
            max(1, round(mm / s)) for mm, s in zip(self.settings.closing_mm, coarse, strict=True)
        )
        kernel = (2 * radius[0] + 1, 2 * radius[1] + 1, 2 * radius[2] + 1)
        step_kernel = (3, 2 * (step_px // factor) + 1, 2 * (step_px // factor) + 1)
        reach = (  # in full-resolution voxels
            radius[0] + steps + 1,
            (radius[1] + step_px // factor * steps) * factor + 1,
            (radius[2] + step_px // factor * steps) * factor + 1,
        )
        session = cached_session(
            f"qct-lung-growth-{kernel}-{steps}x{step_kernel}",
            lambda: build_lung_growth_graph(kernel, steps, step_kernel),
            self.providers,
        )

        # Each lung in its own box: half the working memory of one box around both, and
        # no closing across the mediastinum. Fine pixels grow on a grid ``factor`` times
        # coarser in-plane (a coarse pixel is lung or allowed if any of its pixels is);
        # the grown coarse pixels then add only their fine pixels that are allowed.
        # The two lungs run at once, in two threads (onnxruntime and numpy release the GIL;
        # a one-channel 3-D pooling runs on one onnxruntime thread).
        def grow_side(side: int) -> tuple[tuple[slice, ...], np.ndarray] | None:
            part = lungs == side
            if not part.any():
                return None
            part_box = bounding_box(part, reach)
            mask, permitted = part[part_box], allowed[part_box]
            feeds = {
                "mask": _pool_any(mask, factor)[None, None].astype(np.float32),
                "allowed": _pool_any(permitted, factor)[None, None].astype(np.float32),
            }
            grown = session.run(["grown"], feeds, releasing_run_options())[0][0, 0]
            if factor > 1:
                grown = _expand(grown, factor, mask.shape) & permitted
            return part_box, grown | mask

        grown_all = np.zeros(lungs.shape, bool)
        with ThreadPoolExecutor(max_workers=2) as pool:
            for result in pool.map(grow_side, (1, 2)):
                if result is not None:
                    grown_all[result[0]] |= result[1]
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
        """Ground-glass (1) and consolidation (2) inside the lungs, small specks dropped
        (the work is done in the box around the lungs, where all lesion voxels are)."""
        voxel_mm3 = float(np.prod(spacing))
        lesions = np.zeros(lungs.shape, np.uint8)
        box = bounding_box(lungs > 0, (0, 0, 0))
        inside = lungs[box] > 0
        ggo = remove_small(
            bands["ggo"][box] & inside, math.ceil(self.settings.min_ggo_mm3 / voxel_mm3)
        )
        consolidation = remove_small(
            bands["consolidation"][box] & inside,
            math.ceil(self.settings.min_consolidation_mm3 / voxel_mm3),
        )
        region = lesions[box]
        region[ggo] = 1
        region[consolidation] = 2
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
        growth_pixel_mm=float(lungs.get("growth_pixel_mm", default.growth_pixel_mm)),
        surface_mm=float(lungs.get("surface_mm", default.surface_mm)),
        min_ggo_mm3=float(grading.get("min_ground_glass_mm3", default.min_ggo_mm3)),
        min_consolidation_mm3=float(
            grading.get("min_consolidation_mm3", default.min_consolidation_mm3)
        ),
        min_lung_part_share=float(lungs.get("min_part_share", default.min_lung_part_share)),
    )


def _growth_factor(step_px: int, pixel_mm: float, growth_pixel_mm: float) -> int:
    """In-plane pooling factor for the growth: the largest that divides the step in pixels
    and keeps the pooled pixel within ``growth_pixel_mm`` (1 for pixels of 1 mm or more)."""
    factors = [f for f in range(1, step_px + 1) if step_px % f == 0]
    return max(f for f in factors if f == 1 or f * pixel_mm <= growth_pixel_mm)


def _pool_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """(z, y, x) bool -> (z, ceil(y/f), ceil(x/f)): set where any pixel of the f x f block is."""
    if factor == 1:
        return mask
    nz, ny, nx = mask.shape
    out = np.zeros((nz, -(-ny // factor), -(-nx // factor)), bool)
    for dy in range(factor):
        for dx in range(factor):
            part = mask[:, dy::factor, dx::factor]
            out[:, : part.shape[1], : part.shape[2]] |= part
    return out


def _expand(coarse: np.ndarray, factor: int, shape: tuple[int, ...]) -> np.ndarray:
    """Each coarse pixel repeated f x f times in-plane, cut to ``shape``."""
    fine = np.repeat(np.repeat(coarse, factor, axis=1), factor, axis=2)
    return fine[:, : shape[1], : shape[2]]


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


def _dense_box(hu: np.ndarray, above: float, margin: int) -> tuple[slice, ...] | None:
    """All slices, and the rows and columns around voxels denser than ``above`` plus
    ``margin`` pixels; None when there are none."""
    rows = np.zeros(hu.shape[1], bool)
    cols = np.zeros(hu.shape[2], bool)
    for start in range(0, hu.shape[0], BANDS_SLAB):  # one slab of booleans at a time
        dense = hu[start : start + BANDS_SLAB] > above
        rows |= dense.any(axis=(0, 2))
        cols |= dense.any(axis=(0, 1))
    if not rows.any():
        return None
    y, x = np.flatnonzero(rows), np.flatnonzero(cols)
    return (
        slice(0, hu.shape[0]),
        slice(max(int(y[0]) - margin, 0), min(int(y[-1]) + margin + 1, hu.shape[1])),
        slice(max(int(x[0]) - margin, 0), min(int(x[-1]) + margin + 1, hu.shape[2])),
    )


def _body(dense: np.ndarray) -> np.ndarray:
    """The patient: the largest component denser than fat-air mix, holes filled per slice."""
    return fill_holes_slicewise(largest_component(dense))


def _airways(dark: np.ndarray, air_voxels: int) -> np.ndarray:
    """Trachea and main bronchi: small dark-air components touching the first or last slice."""
    airway = np.zeros(dark.shape, bool)
    box = bounding_box(dark, (0, 0, 0))  # labelled in the box around the dark voxels only
    if not airway[box].size or (box[0].start > 0 and box[0].stop < dark.shape[0]):
        return airway
    labels = cc3d.connected_components(dark[box], connectivity=6)
    first = np.unique(labels[0]) if box[0].start == 0 else np.zeros(0, labels.dtype)
    last = np.unique(labels[-1]) if box[0].stop == dark.shape[0] else np.zeros(0, labels.dtype)
    ends = np.union1d(first, last)
    ends = ends[ends > 0]
    if ends.size == 0:
        return airway
    counts = np.bincount(labels.ravel())
    small = ends[counts[ends] <= AIRWAY_MAX_SHARE * max(air_voxels, 1)]
    lut = np.zeros(int(labels.max()) + 1, bool)
    lut[small] = True
    airway[box] = lut[labels]
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
    outer = bounding_box(candidates, (0, 0, 0))  # labelled in the candidates' box; x0 offset
    x0 = outer[2].start
    labels = cc3d.connected_components(candidates[outer], connectivity=6)
    stats = cc3d.statistics(labels)
    sizes = np.asarray(stats["voxel_counts"])[1:]
    centroids = np.asarray(stats["centroids"])[1:] + np.array([0.0, 0.0, x0])
    order = np.argsort(sizes)[::-1]
    largest = int(order[0])
    kept = [int(i) for i in order if sizes[i] >= min_share * sizes[largest]]
    body_x = np.flatnonzero(body.any(axis=(0, 1)))
    mid_body = 0.5 * (body_x[0] + body_x[-1]) if body_x.size else candidates.shape[2] / 2
    width = (body_x[-1] - body_x[0]) if body_x.size else candidates.shape[2]
    box = stats["bounding_boxes"][largest + 1]
    main_lo, main_hi = box[2].start + x0, box[2].stop - 1 + x0
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
        low_side = (np.arange(x0, x0 + labels.shape[2]) < split)[None, None, :]
        region = lungs[outer]
        region[in_lung & low_side] = low_label
        region[in_lung & ~low_side] = high_label
    else:
        lut = np.zeros(len(sizes) + 1, np.uint8)
        for i in kept:
            lut[i + 1] = low_label if centroids[i][2] < split else high_label
        lungs[outer] = lut[labels]
    return lungs, split
