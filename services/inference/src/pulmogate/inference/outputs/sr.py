"""The DICOM SR: a TID 1500 measurement report with the volumes, involvement and grade."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes
from pydicom.valuerep import DA, TM

from pulmogate.inference.outputs.attributes import (
    LOCAL_SCHEME,
    MANUFACTURER,
    clean_source,
    declare_local_codes,
    output_uid,
    series_description,
    set_software_versions,
)
from pulmogate.inference.outputs.seg import LEFT_LUNG, RIGHT_LUNG, SegResult

if TYPE_CHECKING:
    from pulmogate.inference.analysis import Analysis, Figures
    from pulmogate.inference.volume import Volume

SR_SERIES_NUMBER = 9003
SCHEME = LOCAL_SCHEME
MILLILITRE = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
PERCENT = hd.sr.CodedConcept("%", "UCUM", "percent")
GGO_VOLUME = hd.sr.CodedConcept("PG-GGO-VOLUME", SCHEME, "Ground glass opacity volume")
CONSOLIDATION_VOLUME = hd.sr.CodedConcept("PG-CONSOLIDATION-VOLUME", SCHEME, "Consolidation volume")
INVOLVEMENT = hd.sr.CodedConcept("PG-INVOLVEMENT", SCHEME, "Lesion percent of lung volume")
CT_GRADE = hd.sr.CodedConcept("PG-CT-GRADE", SCHEME, "CT severity grade")
LUNG = hd.sr.CodedConcept("39607008", "SCT", "Lung")


def _measurements(figures: Figures) -> list[hd.sr.Measurement]:
    """Lung, ground-glass and consolidation volume (ml) and percent involvement (%)."""
    return [
        hd.sr.Measurement(name=codes.SCT.Volume, value=round(figures.lung_ml, 2), unit=MILLILITRE),
        hd.sr.Measurement(name=GGO_VOLUME, value=round(figures.ggo_ml, 2), unit=MILLILITRE),
        hd.sr.Measurement(
            name=CONSOLIDATION_VOLUME, value=round(figures.consolidation_ml, 2), unit=MILLILITRE
        ),
        hd.sr.Measurement(name=INVOLVEMENT, value=round(figures.percent, 2), unit=PERCENT),
    ]


def _tracking(volume: Volume, analysis: Analysis, key: str, label: str) -> hd.sr.TrackingIdentifier:
    """A deterministic tracking identifier for one measurement group."""
    return hd.sr.TrackingIdentifier(
        uid=output_uid(volume, analysis, "sr-tracking", key), identifier=label
    )


def _groups(
    volume: Volume, analysis: Analysis, seg: SegResult | None
) -> list[
    hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
    | hd.sr.MeasurementsAndQualitativeEvaluations
]:
    """One group per lung (referencing its SEG segment when there is one) and one in total."""
    groups: list[
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations
    ] = []
    for key, label, site, figures in (
        ("right", "Right lung", RIGHT_LUNG, analysis.right),
        ("left", "Left lung", LEFT_LUNG, analysis.left),
    ):
        tracking = _tracking(volume, analysis, key, label)
        sites = [hd.sr.FindingSite(anatomic_location=site)]
        if seg is not None and key in seg.segment_numbers:
            segment = hd.sr.ReferencedSegment(
                sop_class_uid=seg.dataset.SOPClassUID,
                sop_instance_uid=seg.dataset.SOPInstanceUID,
                segment_number=seg.segment_numbers[key],
                source_series=hd.sr.SourceSeriesForSegmentation(volume.series_uid),
            )
            groups.append(
                hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=tracking,
                    referenced_segment=segment,
                    finding_type=site,
                    finding_sites=sites,
                    measurements=_measurements(figures),
                )
            )
        else:
            groups.append(
                hd.sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=tracking,
                    finding_type=site,
                    finding_sites=sites,
                    measurements=_measurements(figures),
                )
            )
    grade = hd.sr.QualitativeEvaluation(
        name=CT_GRADE,
        value=hd.sr.CodedConcept(f"CT-{analysis.grade}", SCHEME, f"CT-{analysis.grade}"),
    )
    groups.append(
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(volume, analysis, "total", "Both lungs"),
            finding_type=LUNG,
            finding_sites=[hd.sr.FindingSite(anatomic_location=LUNG)],
            measurements=_measurements(analysis.total),
            qualitative_evaluations=[grade],
        )
    )
    return groups


def build_sr(
    volume: Volume,
    analysis: Analysis,
    seg: SegResult | None,
    *,
    institution: str | None = None,
    now: datetime | None = None,
) -> pydicom.Dataset:
    """A Comprehensive 3D SR measurement report referencing the source images and the SEG.

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
    )
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
