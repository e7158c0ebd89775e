"""Quantify lungs and lesions per lung, grade the study on the CT-0..CT-4 scale, word the result."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from pulmogate.common.refusals import Refusal, RefusalCode
from pulmogate.inference.segment.base import Segmenter
from pulmogate.inference.volume import Volume, return_freed_memory

NOISE_FLOOR_PERCENT = 1.0  # below this involvement the finding is CT-0 (models/qct.toml, [grading])
MIN_LUNG_ML = 100.0  # less aerated lung than this is not a chest CT we can analyse
MIN_LUNG_SHARE = 0.2  # on its fullest slice, a chest's lungs fill more of it than this
BODY_ABOVE_HU = -500.0  # tissue denser than this is counted as body in the share above
SEGMENT_MAX_VOXELS = 80 * 2**20  # larger volumes are segmented on averaged slices (memory)
GRADE_UPPER_BOUNDS = (25.0, 50.0, 75.0)  # CT-1 < 25 <= CT-2 < 50 <= CT-3 < 75 <= CT-4
SLAB = 64  # slices per step of the volume-wide counts


@dataclass
class Figures:
    """Volumes of one lung (or both) in millilitres."""

    lung_ml: float
    ggo_ml: float
    consolidation_ml: float

    @property
    def lesion_ml(self) -> float:
        """Ground-glass plus consolidation."""
        return self.ggo_ml + self.consolidation_ml

    @property
    def percent(self) -> float:
        """Lesion volume as a percentage of lung volume (0 without lung)."""
        return 100.0 * self.lesion_ml / self.lung_ml if self.lung_ml > 0 else 0.0


@dataclass
class Analysis:
    """Masks, figures and grade of one study."""

    lungs: np.ndarray
    lesions: np.ndarray
    right: Figures
    left: Figures
    total: Figures
    grade: int
    model_name: str
    model_version: str
    timings: dict[str, float] = field(default_factory=dict)

    def prediction(self, language: str = "en") -> str:
        """The one-line result for the job list, in English ("en") or Russian ("ru")."""
        percent = round(self.total.percent)
        if language == "ru":
            if self.grade == 0:
                return "КТ-признаков пневмонии не найдено"
            return f"КТ-признаки вирусной пневмонии, КТ-{self.grade}, объём поражения {percent} %"
        if language != "en":
            raise ValueError(f"language must be 'en' or 'ru', not {language!r}")
        if self.grade == 0:
            return "No CT signs of pneumonia"
        return f"CT signs of viral pneumonia, CT-{self.grade}, {percent} % of lung volume"


def grade_for(percent: float) -> int:
    """CT grade for one lung's involvement: 0 below the noise floor, then 1..4 by 25 % steps."""
    if percent < NOISE_FLOOR_PERCENT:
        return 0
    return 1 + sum(percent >= bound for bound in GRADE_UPPER_BOUNDS)


def _side_figures(lungs: np.ndarray, lesions: np.ndarray, voxel_ml: float) -> tuple[Figures, ...]:
    """Figures of the right (label 1) and left (2) lung, from counts of (lung, lesion)
    pair codes over the volume in slabs (no per-lung copies)."""
    counts = np.zeros((3, 3), np.int64)
    for start in range(0, lungs.shape[0], SLAB):  # slabs: the pair codes stay small
        end = start + SLAB
        codes = lungs[start:end] * np.uint8(3) + lesions[start:end]  # uint8: 0..8
        for code in range(3, 9):
            counts.flat[code] += np.count_nonzero(codes == code)
    return tuple(
        Figures(
            lung_ml=float(counts[side].sum()) * voxel_ml,
            ggo_ml=float(counts[side, 1]) * voxel_ml,
            consolidation_ml=float(counts[side, 2]) * voxel_ml,
        )
        for side in (1, 2)
    )


def lung_share(hu: np.ndarray, lungs: np.ndarray) -> float:
    """The largest per-slice share of lung in lung plus tissue (bowel gas has a small one)."""
    lung_area = np.count_nonzero(lungs, axis=(1, 2))
    tissue_area = np.zeros_like(lung_area)
    for start in range(0, hu.shape[0], SLAB):  # slabs: no volume-sized temporaries
        end = start + SLAB
        tissue = (hu[start:end] > BODY_ABOVE_HU) & (lungs[start:end] == 0)
        tissue_area[start:end] = np.count_nonzero(tissue, axis=(1, 2))
    shares = lung_area / np.maximum(lung_area + tissue_area, 1)
    return float(shares.max()) if shares.size else 0.0


_segmenters: dict[tuple[str, str], Segmenter] = {}


def default_segmenter(model: str = "qct", providers: str = "auto") -> Segmenter:
    """The segmenter of a model card, created and warmed up once per process."""
    from pulmogate.inference.segment import load_segmenter

    key = (model, providers)
    if key not in _segmenters:
        _segmenters[key] = load_segmenter(model, providers)
    return _segmenters[key]


def _coarse(volume: Volume, factor: int) -> Volume:
    """The volume with each run of ``factor`` slices averaged into one (for segmenting)."""
    nz = volume.hu.shape[0]
    groups = -(-nz // factor)
    hu = np.empty((groups, *volume.hu.shape[1:]), np.int16)
    for g in range(groups):
        block = volume.hu[g * factor : (g + 1) * factor]
        hu[g] = np.rint(block.mean(axis=0, dtype=np.float32))
    return replace(
        volume,
        hu=hu,
        spacing=(volume.spacing[0] * factor, volume.spacing[1], volume.spacing[2]),
        positions=volume.positions[::factor],
    )


def segment_within(
    volume: Volume, segmenter: Segmenter, max_voxels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Segment; a volume over ``max_voxels`` is segmented on averaged slices, masks repeated.

    Keeps very long series (1000 thin slices) inside the memory target: the masks keep
    the input's shape, at the z resolution of the averaged slices.
    """
    nz = volume.hu.shape[0]
    factor = -(-volume.hu.size // max_voxels)
    if factor <= 1:
        return segmenter.segment(volume)
    lungs, lesions = segmenter.segment(_coarse(volume, factor))
    return (
        np.repeat(lungs, factor, axis=0)[:nz],
        np.repeat(lesions, factor, axis=0)[:nz],
    )


def analyse(
    volume: Volume, segmenter: Segmenter | None = None, *, max_voxels: int = SEGMENT_MAX_VOXELS
) -> Analysis:
    """Segment, quantify and grade one volume; refuse it (NO_LUNGS) if no lungs are found."""
    segmenter = segmenter or default_segmenter()
    started = time.perf_counter()
    lungs, lesions = segment_within(volume, segmenter, max_voxels)
    return_freed_memory()
    segmented = time.perf_counter()
    lungs = lungs.astype(np.uint8, copy=False)
    lesions = lesions.astype(np.uint8, copy=False)
    for start in range(0, lungs.shape[0], SLAB):  # lesions outside the lungs do not count
        np.copyto(lesions[start : start + SLAB], 0, where=lungs[start : start + SLAB] == 0)
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    right, left = _side_figures(lungs, lesions, voxel_ml)
    total = Figures(
        lung_ml=right.lung_ml + left.lung_ml,
        ggo_ml=right.ggo_ml + left.ggo_ml,
        consolidation_ml=right.consolidation_ml + left.consolidation_ml,
    )
    if total.lung_ml < MIN_LUNG_ML:
        raise Refusal(
            RefusalCode.NO_LUNGS,
            f"found {total.lung_ml:.0f} ml of lung, at least {MIN_LUNG_ML:.0f} ml is needed "
            "(not a chest CT?)",
        )
    share = lung_share(volume.hu, lungs)
    if share < MIN_LUNG_SHARE:
        raise Refusal(
            RefusalCode.NO_LUNGS,
            f"the air-filled regions found fill at most {100 * share:.0f} % of a slice's body "
            f"cross-section, lungs fill over {100 * MIN_LUNG_SHARE:.0f} % (not a chest CT?)",
        )
    grade = max(grade_for(right.percent), grade_for(left.percent))
    return Analysis(
        lungs=lungs,
        lesions=lesions,
        right=right,
        left=left,
        total=total,
        grade=grade,
        model_name=segmenter.name,
        model_version=segmenter.version,
        timings={"segment": segmented - started, "quantify": time.perf_counter() - segmented},
    )
