"""The lung finder of the qct model, on the working grid (about 1.5 mm pixels).

Aerated tissue inside the body is eroded so that thin bridges break (a diaphragm cut
obliquely between a lung base and the stomach, a bronchial wall), and each piece is told
apart: gas whose surroundings are mostly tissue (trachea, main bronchi, stomach, bowel,
air under the table) is not lung; large pieces of lung-dense air are. The lungs are then
completed in 3-D only: a small closing takes in vessels and airway walls, a large one the
bays of consolidation along the chest wall (lesion-dense tissue only), and holes are
filled only where they are enclosed in 3-D, so the liver and spleen under the domes of the
diaphragm (enclosed in one slice, open in the next) stay out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np

from pulmogate.inference.segment.grid import WorkingGrid, pool, unpool
from pulmogate.inference.segment.masks import (
    bounding_box,
    components_touching,
    fill_holes_3d,
    fill_holes_slicewise,
    largest_component,
)
from pulmogate.inference.segment.morphology import Morphology
from pulmogate.inference.segment.qct_graph import Bands, Ellipsoid, HuClass

COARSE_MM = 3.0  # block size of the bay closing and the growth
NEAR_OUTSIDE, NEAR_INSIDE, INTERIOR = 1, 2, 3  # fine_lungs: working voxels at the surface


@dataclass(frozen=True)
class LungSettings:
    """Sizes (mm, ml) and shares of the lung finder; the card's [lungs] table sets them."""

    body_opening_mm: float = 1.5  # thinner dense shells (blanket, tubes) are not body
    core_erosion_mm: float = 2.5  # aerated tissue is eroded this much before it is told apart
    gas_ring_mm: tuple[float, float] = (1.0, 3.5)  # ring around a gas piece, beyond the erosion
    gas_tissue_share: float = 0.6  # a gas piece whose ring is more tissue than this is not lung
    gas_min_ml: float = 0.2  # smaller gas pieces are left to the lung they sit in
    gas_mean_below: float = -960.0  # an eroded air piece this dark on average is gas, not lung
    min_lung_ml: float = 20.0  # smaller air pieces are not lung
    min_part_share: float = 0.01  # ... nor pieces under this share of the largest
    small_closing_mm: float = 5.0  # vessels and airway walls inside the lung
    bay_closing_mm: float = 15.0  # consolidation along the chest wall
    growth_mm: float = 60.0  # ... and further, into thick partly aerated tissue joined to it
    growth_opening_mm: float = 2.5  # thinner lesion-dense layers (pleural fat) are not grown into
    surface_mm: float = 5.0  # lesion-dense tissue this close to the skin (fat) is not lung
    fill_below_hu: float = (
        -150.0
    )  # bays and growth add tissue below this (not fat, not soft tissue)


def find_lungs(
    mean_hu: np.ndarray,
    dense: np.ndarray,
    grid: WorkingGrid,
    bands: Bands,
    settings: LungSettings,
    morphology: Morphology,
    right_is_low_x: bool,
) -> np.ndarray:
    """Lung labels (uint8: 1 right, 2 left) on the working grid, from its mean HU and dense
    share (see the module docstring)."""
    spacing = grid.spacing
    pixel = min(spacing[1], spacing[2])
    body = _body(dense >= 0.5, round(settings.body_opening_mm / pixel), morphology)
    air = (mean_hu < bands.air_below) & body
    labels = np.zeros(mean_hu.shape, np.uint8)
    if not air.any():
        return labels
    core_element = Ellipsoid.for_mm(settings.core_erosion_mm, spacing)
    core = morphology.erode(air, core_element)
    gas = _gas_outside_lungs(
        core & (mean_hu < bands.dark_air_below), mean_hu, grid, bands, settings, morphology
    )
    lung_cores, other_cores = _lung_cores(core & ~gas, mean_hu, grid, settings)
    # One label dilation: 2 (not lung) wins over 1 (lung) wherever both are within reach.
    cores = np.where(other_cores | gas, np.uint8(2), lung_cores.astype(np.uint8))
    reach = Ellipsoid.for_mm(settings.core_erosion_mm + pixel, spacing)
    candidates = air & (morphology.dilate_labels(cores, reach) == 1)
    candidates = components_touching(candidates, lung_cores)
    if not candidates.any():
        return labels
    split_labels, _ = split_lungs(candidates, body, settings.min_part_share, right_is_low_x)
    allowed = (
        (mean_hu >= bands.ground_glass[0])
        & (mean_hu < settings.fill_below_hu)
        & morphology.erode(body, Ellipsoid.flat(max(1, round(settings.surface_mm / pixel))))
        & ~gas
    )
    for side in (1, 2):
        part = split_labels == side
        if part.any():
            completed = _complete(part, allowed, spacing, settings, morphology)
            labels[completed & (labels == 0)] = side
    return labels


def _body(dense: np.ndarray, radius: int, morphology: Morphology) -> np.ndarray:
    """The patient: the largest dense component after an in-plane opening, grown back into
    the dense voxels within the opening's reach (a thin chest wall), holes filled."""
    if radius <= 0 or not dense.any():
        return fill_holes_slicewise(largest_component(dense))
    element = Ellipsoid.flat(radius)
    core = largest_component(morphology.open(dense, element))
    return fill_holes_slicewise(core | (morphology.dilate(core, element) & dense))


def _gas_outside_lungs(
    gas_cores: np.ndarray,
    mean_hu: np.ndarray,
    grid: WorkingGrid,
    bands: Bands,
    settings: LungSettings,
    morphology: Morphology,
) -> np.ndarray:
    """Pieces of gas whose surroundings are mostly tissue: airway lumen, stomach, bowel.

    The ring is measured from ``gas_ring_mm`` beyond the eroded piece (past the partial
    volume of its wall): inside a lung it is lung parenchyma, outside it is tissue.
    """
    if not gas_cores.any():
        return gas_cores
    min_voxels = max(1, round(settings.gas_min_ml * 1000.0 / grid.voxel_mm3))
    pieces = cc3d.dust(gas_cores, threshold=min_voxels, connectivity=6, in_place=False)
    labels, count = cc3d.connected_components(pieces, connectivity=6, return_N=True)
    if count == 0:
        return np.zeros(gas_cores.shape, bool)
    erosion = settings.core_erosion_mm
    inner = morphology.dilate(
        labels > 0, Ellipsoid.for_mm(erosion + settings.gas_ring_mm[0], grid.spacing)
    )
    outer = morphology.dilate_labels(
        labels.astype(np.float32), Ellipsoid.for_mm(erosion + settings.gas_ring_mm[1], grid.spacing)
    )
    ring = (outer > 0) & ~inner
    around = np.bincount(outer[ring], minlength=count + 1).astype(np.float64)
    tissue = np.bincount(
        outer[ring], weights=(mean_hu[ring] >= bands.air_below), minlength=count + 1
    )
    share = tissue / np.maximum(around, 1.0)
    outside = share > settings.gas_tissue_share
    outside[0] = False
    return outside[labels]


def _lung_cores(
    cores: np.ndarray, mean_hu: np.ndarray, grid: WorkingGrid, settings: LungSettings
) -> tuple[np.ndarray, np.ndarray]:
    """(lung, other): eroded air pieces large and lung-dense enough to be lung, and the rest."""
    labels, count = cc3d.connected_components(cores, connectivity=6, return_N=True)
    if count == 0:
        empty = np.zeros(cores.shape, bool)
        return empty, empty
    voxels = np.bincount(labels.ravel(), minlength=count + 1)
    total = np.bincount(labels.ravel(), weights=mean_hu.ravel(), minlength=count + 1)
    mean = total / np.maximum(voxels, 1)
    ml = voxels * grid.voxel_mm3 / 1000.0
    lung = (ml >= settings.min_lung_ml) & (mean >= settings.gas_mean_below)
    lung[0] = False
    other = ~lung
    other[0] = False
    return lung[labels], other[labels]


def _complete(
    part: np.ndarray,
    allowed: np.ndarray,
    spacing: tuple[float, float, float],
    settings: LungSettings,
    morphology: Morphology,
) -> np.ndarray:
    """One lung completed in 3-D: vessels, enclosed lesions, consolidation bays and thick
    partly aerated tissue joined to it. The bays and the growth, coarse by nature, run on
    blocks of about 3 mm (``COARSE_MM``); only allowed working voxels are added."""
    factors = _coarse_factors(spacing)
    coarse_spacing = (spacing[0] * factors[0], spacing[1] * factors[1], spacing[2] * factors[2])
    reach = Ellipsoid.for_mm(settings.bay_closing_mm + settings.growth_mm, coarse_spacing)
    margin = tuple(
        f * m
        for f, m in zip(
            factors, (reach.rz + 1, max(reach.radii) + 2, max(reach.radii) + 2), strict=True
        )
    )
    box = _aligned(bounding_box(part, margin), factors)  # type: ignore[arg-type]
    mask = fill_holes_3d(
        morphology.close(part[box], Ellipsoid.for_mm(settings.small_closing_mm, spacing))
    )
    permitted = allowed[box]
    coarse = pool(mask, factors)
    bays = morphology.close(coarse, Ellipsoid.for_mm(settings.bay_closing_mm, coarse_spacing))
    mask |= unpool(bays, factors, mask.shape) & permitted
    if settings.growth_mm > 0:
        thick = morphology.open(
            pool(permitted, factors, 0.5),
            Ellipsoid.for_mm(settings.growth_opening_mm, coarse_spacing),
        )
        step = Ellipsoid.for_mm(max(coarse_spacing), coarse_spacing)
        steps = max(1, round(settings.growth_mm / max(coarse_spacing)))
        grown = morphology.grow(pool(mask, factors), thick, step, steps)
        mask |= unpool(grown, factors, mask.shape) & permitted
    out = np.zeros(part.shape, bool)
    out[box] = fill_holes_3d(mask)
    return out


def _aligned(box: tuple[slice, ...], factors: tuple[int, int, int]) -> tuple[slice, ...]:
    """``box`` with its starts moved down to multiples of ``factors`` (the coarse blocks then
    sit at the same places whatever box the lung is in)."""
    return tuple(slice(s.start - s.start % f, s.stop) for s, f in zip(box, factors, strict=True))


def _coarse_factors(spacing: tuple[float, float, float]) -> tuple[int, int, int]:
    """Block sizes (z, y, x) that make voxels of about COARSE_MM."""
    return tuple(max(1, int(COARSE_MM // s)) for s in spacing)  # type: ignore[return-value]


def split_lungs(
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


def fine_lungs(
    grid_labels: np.ndarray, classes: np.ndarray, grid: WorkingGrid, morphology: Morphology
) -> np.ndarray:
    """The working-grid lungs on the fine pixels: the interior as it is, and within one
    working pixel of the surface the fine pixels of the lung's side of the boundary
    (below 0 HU inside the working mask, aerated or ground-glass just outside it)."""
    if grid.factor == 1:
        return grid_labels
    lung = grid_labels > 0
    step = Ellipsoid.flat(1)
    # One working-grid code per voxel, expanded once: label * 4 + where it is.
    where = np.zeros(lung.shape, np.uint8)
    where[morphology.dilate(lung, step)] = NEAR_OUTSIDE
    where[lung] = NEAR_INSIDE
    where[morphology.erode(lung, step)] = INTERIOR
    grown = morphology.dilate_labels(grid_labels, step).astype(np.uint8)
    code = grid.expand(np.where(lung, grid_labels, grown) * np.uint8(4) + where)
    where_fine = code & np.uint8(3)
    keep = (where_fine == INTERIOR) | ((where_fine == NEAR_INSIDE) & (classes < HuClass.DENSE))
    keep |= (where_fine == NEAR_OUTSIDE) & (classes <= HuClass.GROUND_GLASS)
    return np.where(keep, code >> 2, np.uint8(0))
