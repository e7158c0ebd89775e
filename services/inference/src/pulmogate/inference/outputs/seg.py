"""The DICOM SEG: right and left lung, ground-glass opacity and consolidation as binary segments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes

from pulmogate.inference.outputs import codes as code
from pulmogate.inference.outputs.attributes import (
    MANUFACTURER,
    clean_source,
    output_uid,
    series_description,
    set_software_versions,
    software_versions,
)
from pulmogate.inference.volume import return_freed_memory

if TYPE_CHECKING:
    from pulmogate.inference.analysis import Analysis
    from pulmogate.inference.volume import Volume

SEG_SERIES_NUMBER = 9004
OVERLAP_SLAB = 16  # slices per step of the segment-overlap check


@dataclass(frozen=True)
class SegmentSpec:
    """What one segment is: its key, label, category, type, source array and label value."""

    key: str
    label: str
    category: hd.sr.CodedConcept
    property_type: hd.sr.CodedConcept
    source: str  # "lungs" or "lesions"
    value: int


SEGMENTS = (
    SegmentSpec("right", "Right lung", code.ANATOMICAL_STRUCTURE, code.RIGHT_LUNG, "lungs", 1),
    SegmentSpec("left", "Left lung", code.ANATOMICAL_STRUCTURE, code.LEFT_LUNG, "lungs", 2),
    SegmentSpec(
        "ggo",
        "Ground-glass opacity",
        code.ABNORMAL_STRUCTURE,
        code.GROUND_GLASS_OPACITY,
        "lesions",
        1,
    ),
    SegmentSpec(
        "consolidation",
        "Consolidation",
        code.ABNORMAL_STRUCTURE,
        code.CONSOLIDATION,
        "lesions",
        2,
    ),
)


@dataclass(frozen=True)
class SegResult:
    """The SEG dataset and the segment number of each present segment key."""

    dataset: hd.seg.Segmentation
    segment_numbers: dict[str, int]


class _Segmentation(hd.seg.Segmentation):
    """highdicom's Segmentation with a leaner overlap check for 4-D boolean stacks.

    highdicom sums the (z, y, x, segments) array over segments into an int64 array of the
    volume's size (8 bytes a voxel: 2 GB for 1000 slices of 512², and about 2 s for 300);
    this counts overlaps slab by slab in uint8 instead. Other arrays go to highdicom's check.
    """

    @classmethod
    def _check_and_cast_pixel_array(
        cls,
        pixel_array: Any,
        segment_numbers: np.ndarray,
        segmentation_type: hd.seg.SegmentationTypeValues,
        dtype: type,
    ) -> tuple[Any, hd.seg.SegmentsOverlapValues]:
        if not (
            isinstance(pixel_array, np.ndarray)
            and pixel_array.dtype == np.bool_
            and pixel_array.ndim == 4
            and pixel_array.shape[-1] == len(segment_numbers)
        ):
            return super()._check_and_cast_pixel_array(
                pixel_array, segment_numbers, segmentation_type, dtype
            )
        overlap = False
        for start in range(0, pixel_array.shape[0], OVERLAP_SLAB):
            slab = pixel_array[start : start + OVERLAP_SLAB]
            count = slab[..., 0].astype(np.uint8)
            for k in range(1, slab.shape[-1]):
                count += slab[..., k]
            if (count > 1).any():
                overlap = True
                break
        values = hd.seg.SegmentsOverlapValues
        return pixel_array, values.YES if overlap else values.NO


def algorithm(analysis: Analysis) -> hd.AlgorithmIdentificationSequence:
    """The algorithm identification: the model's name and version."""
    return hd.AlgorithmIdentificationSequence(
        name=analysis.model_name,
        family=codes.DCM.ArtificialIntelligence,
        version=analysis.model_version,
        source=MANUFACTURER,
    )


def build_seg(
    volume: Volume, analysis: Analysis, *, institution: str | None = None
) -> SegResult | None:
    """A binary SEG of the non-empty segments over the source slices, or None when all are empty."""
    present = [spec for spec in SEGMENTS if np.any(getattr(analysis, spec.source) == spec.value)]
    if not present:
        return None
    identification = algorithm(analysis)
    return_freed_memory()  # the heap left by the overlay images, before the largest array
    # One (z, y, x, segment) boolean array, filled in place: lungs and lesions overlap.
    pixels = np.empty((*analysis.lungs.shape, len(present)), dtype=bool)
    descriptions: list[hd.seg.SegmentDescription] = []
    numbers: dict[str, int] = {}
    for number, spec in enumerate(present, start=1):
        np.equal(getattr(analysis, spec.source), spec.value, out=pixels[..., number - 1])
        numbers[spec.key] = number
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=spec.label,
                segmented_property_category=spec.category,
                segmented_property_type=spec.property_type,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=identification,
                tracking_uid=output_uid(volume, analysis, "seg-tracking", spec.key),
                tracking_id=spec.label,
            )
        )
    seg = _Segmentation(
        # highdicom takes the patient and study from the first image: give it checked values
        source_images=[clean_source(volume.headers[0]), *volume.headers[1:]],
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=output_uid(volume, analysis, "seg", "series"),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=output_uid(volume, analysis, "seg", 0),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=analysis.model_name[:64],
        software_versions=software_versions(analysis)[0],
        device_serial_number="0",
        content_label="PULMOGATE",
        content_description=series_description("segmentation", analysis),
        omit_empty_frames=True,
    )
    seg.SeriesDescription = series_description("segmentation", analysis)
    set_software_versions(seg, analysis)
    if institution:
        seg.InstitutionName = institution[:64]
    return SegResult(dataset=seg, segment_numbers=numbers)
