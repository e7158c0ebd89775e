"""The lesion finder of the qct model: ground-glass and consolidation that are regions.

Lung tissue in the lesion bands is mostly not disease on a real CT: vessels and their
partial-volume sleeves, airway walls, fissures, the rim along the pleura, the mediastinum
and the diaphragm. What is left after taking those out is a lesion:

1. vessels: voxels of a bright tube at some scale (multiscale vesselness) whose mean HU
   is vessel-dense, with a sleeve of about 1 mm, are not lesion;
2. thin structures: an opening with a ball of ``opening_mm`` removes what is thinner than
   its diameter in any direction (small vessels, airway walls, fissures, a one-slice layer
   over a diaphragm dome cut obliquely);
3. the rim: what lies within ``rim_mm`` of the lung's surface does not seed a lesion;
4. size: seeds smaller than ``min_lesion_mm3`` are dropped;
5. the lesion is the seeds grown back by ``regrow_mm`` into band tissue (its partial
   volume edge, and a subpleural lesion back to the pleura), then read at the fine
   pixels: ground-glass or consolidation by band.

Steps 1 to 4 run on the working grid (about 1.5 mm pixels), step 5 on the input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cc3d
import numpy as np

from pulmogate.inference.segment.grid import WorkingGrid
from pulmogate.inference.segment.masks import bounding_box
from pulmogate.inference.segment.morphology import Morphology
from pulmogate.inference.segment.qct_graph import Bands, Ellipsoid, FrangiParameters, HuClass
from pulmogate.inference.segment.vessels import vesselness


@dataclass(frozen=True)
class LesionSettings:
    """Sizes (mm, mm3) and thresholds of the lesion finder; the card's [lesion_finder] table."""

    vessel_levels: int = 3  # vesselness scales: blur sigma about 1.7, 3.4 and 6.9 mm
    vessel_threshold: float = 0.15  # Frangi vesselness above this (a ball: 0.117 at most) ...
    vessel_core_hu: float = -300.0  # ... where the working mean is this dense is a vessel
    vessel_sleeve_mm: float = 1.0  # partial volume around a vessel
    opening_mm: float = 2.5  # radius: thinner structures are not lesions
    rim_mm: float = 3.0  # no lesion seed this close to the lung's surface
    min_lesion_mm3: float = 300.0  # smaller seeds are dropped
    regrow_mm: float = 3.0  # seeds grow back this far into band tissue
    frangi: FrangiParameters = field(default_factory=FrangiParameters)


def find_lesions(
    classes: np.ndarray,
    lungs: np.ndarray,
    mean_hu: np.ndarray,
    grid_lungs: np.ndarray,
    grid: WorkingGrid,
    bands: Bands,
    settings: LesionSettings,
    morphology: Morphology,
    providers: str = "auto",
) -> np.ndarray:
    """Lesions (1 ground-glass, 2 consolidation) on the fine pixels of ``classes``.

    ``classes`` and ``lungs`` are fine (HuClass codes, lung labels); ``mean_hu`` and
    ``grid_lungs`` are on the working grid ``grid``.
    """
    lesions = np.zeros(classes.shape, np.uint8)
    in_lung = grid_lungs > 0
    if not in_lung.any():
        return lesions
    spacing = grid.spacing
    opening = Ellipsoid.for_mm(settings.opening_mm, spacing)
    regrow = Ellipsoid.for_mm(settings.regrow_mm, spacing)
    reach = max(opening.rz, regrow.rz) + 1, max(*opening.radii, *regrow.radii) + 1
    box = bounding_box(in_lung, (reach[0], reach[1], reach[1]))
    lung_box = in_lung[box]
    mean_box = mean_hu[box]
    vessel = _vessels(mean_box, lung_box, spacing, settings, morphology, providers)
    band = (
        lung_box
        & (mean_box >= bands.ground_glass[0])
        & (mean_box < bands.consolidation[1])
        & ~vessel
    )
    seeds = morphology.open(band, opening)
    seeds &= morphology.erode(lung_box, Ellipsoid.for_mm(settings.rim_mm, spacing))
    min_voxels = max(1, round(settings.min_lesion_mm3 / grid.voxel_mm3))
    seeds = cc3d.dust(seeds, threshold=min_voxels, connectivity=26, in_place=False)
    if not seeds.any():
        return lesions
    grown = np.zeros(in_lung.shape, bool)
    grown[box] = morphology.dilate(seeds, regrow) & ~vessel
    fine_reach = grid.expand(grown) & (lungs > 0)
    lesions[fine_reach & (classes == HuClass.GROUND_GLASS)] = 1
    consolidation = (classes == HuClass.CONSOLIDATION) | (classes == HuClass.DENSE)
    lesions[fine_reach & consolidation] = 2
    return lesions


def _vessels(
    mean_hu: np.ndarray,
    in_lung: np.ndarray,
    spacing: tuple[float, float, float],
    settings: LesionSettings,
    morphology: Morphology,
    providers: str,
) -> np.ndarray:
    """Vessel voxels (with their sleeve) in the box around the lungs."""
    vessel = np.zeros(mean_hu.shape, bool)
    sleeve = Ellipsoid.for_mm(settings.vessel_sleeve_mm, spacing)
    margin = 4 * (2**settings.vessel_levels)  # the coarsest level's reach, in pixels
    box = bounding_box(in_lung, (margin // 2, margin, margin))
    score = vesselness(mean_hu[box], spacing, settings.vessel_levels, settings.frangi, providers)
    cores = (score > settings.vessel_threshold) & (mean_hu[box] > settings.vessel_core_hu)
    vessel[box] = morphology.dilate(cores, sleeve) if max(sleeve.radii) > 0 else cores
    return vessel
