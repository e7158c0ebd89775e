"""The DICOM SR: a TID 1500 measurement report with the volumes, involvement and grade."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes
from pydicom.valuerep import DA, TM

from pulmogate.inference.outputs import codes as code
from pulmogate.inference.outputs.attributes import (
    MANUFACTURER,
    clean_source,
    declare_local_codes,
    output_uid,
    series_description,
    set_software_versions,
)
from pulmogate.inference.outputs.seg import SegResult

if TYPE_CHECKING:
    from pulmogate.inference.analysis import Analysis, Figures
    from pulmogate.inference.volume import Volume

SR_SERIES_NUMBER = 9003
Group = (
    hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
    | hd.sr.MeasurementsAndQualitativeEvaluations
)
# The regions measured: (key, label, code) of each lung and of both.
REGIONS = (
    ("right", "Right lung", code.RIGHT_LUNG),
    ("left", "Left lung", code.LEFT_LUNG),
    ("total", "Both lungs", code.LUNG),
)
# The lesions measured in each region: (key, label, code, figure).
LESIONS = (
    ("ggo", "Ground-glass opacity", code.GROUND_GLASS_OPACITY, "ggo_ml"),
    ("consolidation", "Consolidation", code.CONSOLIDATION, "consolidation_ml"),
)


def _volume(ml: float) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=code.VOLUME, value=round(ml, 2), unit=code.MILLILITRE)


def _tracking(volume: Volume, analysis: Analysis, key: str, label: str) -> hd.sr.TrackingIdentifier:
    """A deterministic tracking identifier for one measurement group."""
    return hd.sr.TrackingIdentifier(
        uid=output_uid(volume, analysis, "sr-tracking", key), identifier=label
    )


def _segment(volume: Volume, seg: SegResult | None, key: str) -> hd.sr.ReferencedSegment | None:
    """The SEG segment of ``key``, when the SEG holds one."""
    if seg is None or key not in seg.segment_numbers:
        return None
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg.dataset.SOPClassUID,
        sop_instance_uid=seg.dataset.SOPInstanceUID,
        segment_number=seg.segment_numbers[key],
        source_series=hd.sr.SourceSeriesForSegmentation(volume.series_uid),
    )


def _group(
    tracking: hd.sr.TrackingIdentifier,
    finding: hd.sr.CodedConcept,
    site: hd.sr.CodedConcept,
    segment: hd.sr.ReferencedSegment | None,
    measurements: list[hd.sr.Measurement],
    evaluations: list[hd.sr.QualitativeEvaluation] | None = None,
) -> Group:
    """A TID 1411 group over a SEG segment, or a TID 1501 group where there is none."""
    common: dict[str, Any] = {
        "tracking_identifier": tracking,
        "finding_type": finding,
        "finding_sites": [hd.sr.FindingSite(anatomic_location=site)],
        "measurements": measurements,
        "qualitative_evaluations": evaluations,
    }
    if segment is not None:
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            referenced_segment=segment, **common
        )
    return hd.sr.MeasurementsAndQualitativeEvaluations(**common)


def _groups(volume: Volume, analysis: Analysis, seg: SegResult | None) -> list[Group]:
    """Per region (right lung, left lung, both): the lung's volume and the percent of it
    that lesions take (with the CT grade for both lungs), then each lesion's volume in it.
    A group references its SEG segment where one segment is exactly what it measures."""
    groups: list[Group] = []
    for key, label, site in REGIONS:
        figures: Figures = getattr(analysis, key)
        involvement = hd.sr.Measurement(
            name=code.INVOLVEMENT, value=round(figures.percent, 2), unit=code.PERCENT
        )
        grade = (
            [hd.sr.QualitativeEvaluation(name=code.SEVERITY, value=code.ct_grade(analysis.grade))]
            if key == "total"
            else None
        )
        groups.append(
            _group(
                _tracking(volume, analysis, key, label),
                site,
                site,
                _segment(volume, seg, key),
                [_volume(figures.lung_ml), involvement],
                grade,
            )
        )
        for lesion, lesion_label, finding, figure in LESIONS:
            name = f"{lesion_label}, {label.lower()}"
            groups.append(
                _group(
                    _tracking(volume, analysis, f"{lesion}-{key}", name),
                    finding,
                    site,
                    _segment(volume, seg, lesion) if key == "total" else None,
                    [_volume(getattr(figures, figure))],
                )
            )
    return groups


def add_impression(report: hd.sr.MeasurementReport, impression: str) -> None:
    """The report's text impression (TID 1500 Qualitative Evaluations: one TEXT item)."""
    text = hd.sr.TextContentItem(
        name=code.IMPRESSION,
        value=impression[:1024],
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    evaluations = hd.sr.ContainerContentItem(
        name=code.QUALITATIVE_EVALUATIONS,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    evaluations.ContentSequence = hd.sr.ContentSequence([text])
    report[0].ContentSequence.append(evaluations)


def build_sr(
    volume: Volume,
    analysis: Analysis,
    seg: SegResult | None,
    *,
    language: str = "en",
    institution: str | None = None,
    now: datetime | None = None,
) -> pydicom.Dataset:
    """A Comprehensive 3D SR measurement report referencing the source images and the SEG,
    with the prediction sentence (in ``language``) as its text impression.

    The source slices are referenced as evidence (CurrentRequestedProcedureEvidenceSequence) and
    through the SEG segments; no TID 1600 image library, which costs seconds for 300 slices.
    """
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=output_uid(volume, analysis, "device", analysis.model_name),
            name=analysis.model_name[:64],
            manufacturer_name=MANUFACTURER,
            model_name=f"{analysis.model_name} {analysis.model_version}"[:64],
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.LN.CTChestReport,
        imaging_measurements=_groups(volume, analysis, seg),
        language_of_content_item_and_descendants=hd.sr.LanguageOfContentItemAndDescendants(
            language=code.LANGUAGES[language]
        ),
    )
    add_impression(report, analysis.prediction(language))
    # highdicom takes the patient and study from the first evidence: give it checked values
    evidence = [
        clean_source(volume.headers[0]),
        *volume.headers[1:],
        *([seg.dataset] if seg is not None else []),
    ]
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=output_uid(volume, analysis, "sr", "series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=output_uid(volume, analysis, "sr", 0),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        institution_name=institution[:64] if institution else None,
    )
    set_software_versions(sr, analysis)
    declare_local_codes(sr)
    sr.SeriesDescription = series_description("report", analysis)
    if now is not None:
        sr.ContentDate = DA(now.strftime("%Y%m%d"))
        sr.ContentTime = TM(now.strftime("%H%M%S"))
    return sr
