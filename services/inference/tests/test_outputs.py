"""DICOM outputs of an analysis: same study, deterministic UIDs, valid objects, visible marks."""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pulmogate.inference.analysis import Analysis, Figures
from pulmogate.inference.outputs import OutputObject, build_outputs
from pulmogate.inference.outputs.render import CONSOLIDATION_COLOUR, GGO_COLOUR
from pulmogate.inference.volume import Volume
from pulmogate.tools.phantom import make_phantom, write_series

DCIODVFY = shutil.which("dciodvfy") or "/usr/bin/dciodvfy"
STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
)


def _figures(lungs: np.ndarray, lesions: np.ndarray, voxel_ml: float, side: int | None) -> Figures:
    """Figures of one lung (side 1 or 2) or both (None) from the masks."""
    lung = lungs > 0 if side is None else lungs == side
    return Figures(
        lung_ml=float(np.count_nonzero(lung)) * voxel_ml,
        ggo_ml=float(np.count_nonzero(lung & (lesions == 1))) * voxel_ml,
        consolidation_ml=float(np.count_nonzero(lung & (lesions == 2))) * voxel_ml,
    )


def make_case(tmp_path: Path, *, slices: int = 20, size: int = 128) -> tuple[Volume, Analysis]:
    """A phantom CT series written and read back as a Volume, with its exact analysis."""
    phantom = make_phantom(slices=slices, size=size, involvement=0.3, seed=3)
    paths = write_series(phantom, tmp_path / "ct", patient_id="PG-OUT-1")
    headers: list[pydicom.Dataset] = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    for header in headers:  # a Cyrillic name must survive into every output
        header.SpecificCharacterSet = "ISO_IR 192"
        header.PatientName = "ФАНТОМ^ГРУДНАЯ^КЛЕТКА"
        header.AccessionNumber = "A-42"
    volume = Volume(
        hu=phantom.hu,
        spacing=phantom.spacing,
        positions=np.array([[float(v) for v in h.ImagePositionPatient] for h in headers]),
        orientation=tuple(float(v) for v in headers[0].ImageOrientationPatient),
        headers=headers,
    )
    voxel_ml = float(np.prod(phantom.spacing)) / 1000.0
    total = _figures(phantom.lungs, phantom.lesions, voxel_ml, None)
    analysis = Analysis(
        lungs=phantom.lungs,
        lesions=phantom.lesions,
        right=_figures(phantom.lungs, phantom.lesions, voxel_ml, 1),
        left=_figures(phantom.lungs, phantom.lesions, voxel_ml, 2),
        total=total,
        grade=2,
        model_name="qct",
        model_version="1.0",
    )
    return volume, analysis


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Volume, Analysis]:
    """One small analysed phantom series shared by the tests of this module."""
    return make_case(tmp_path_factory.mktemp("case"))


@pytest.fixture(scope="module")
def outputs(case: tuple[Volume, Analysis]) -> list[OutputObject]:
    """The outputs of the shared case, in English."""
    return build_outputs(*case, institution="Test Hospital")


def _of(outputs: list[OutputObject], kind: str) -> list[pydicom.Dataset]:
    """The datasets of one kind."""
    return [o.dataset for o in outputs if o.kind == kind]


def test_every_kind_is_built(outputs: list[OutputObject], case: tuple[Volume, Analysis]) -> None:
    """One overlay image per lung slice, one summary, one SR and one SEG."""
    _, analysis = case
    lung_slices = int(analysis.lungs.reshape(analysis.lungs.shape[0], -1).any(axis=1).sum())
    assert len(_of(outputs, "overlay")) == lung_slices
    assert [len(_of(outputs, k)) for k in ("summary", "sr", "seg")] == [1, 1, 1]


def test_outputs_share_the_input_study(
    outputs: list[OutputObject], case: tuple[Volume, Analysis]
) -> None:
    """Patient and study attributes are copied; every object is PulmoGate's, in its own series."""
    volume, _ = case
    source = volume.headers[0]
    for output in outputs:
        ds = output.dataset
        for keyword in STUDY_KEYWORDS:
            assert str(ds.get(keyword, "")) == str(source.get(keyword, "")), (output.kind, keyword)
        assert ds.Manufacturer == "PulmoGate"
        assert any("qct 1.0" in str(v) for v in ds.SoftwareVersions)
        assert ds.SeriesInstanceUID != volume.series_uid
    numbers = {o.kind: int(o.dataset.SeriesNumber) for o in outputs}
    assert numbers == {"overlay": 9001, "summary": 9002, "sr": 9003, "seg": 9004}


def test_output_uids_are_deterministic(
    outputs: list[OutputObject], case: tuple[Volume, Analysis]
) -> None:
    """The same input and model version give the same UIDs; another version gives others."""
    again = build_outputs(*case)
    uids = [(o.dataset.SeriesInstanceUID, o.dataset.SOPInstanceUID) for o in outputs]
    assert uids == [(o.dataset.SeriesInstanceUID, o.dataset.SOPInstanceUID) for o in again]
    assert len({sop for _, sop in uids}) == len(uids)
    volume, analysis = case
    other = replace(analysis, model_version="1.1")
    other_uids = {o.dataset.SOPInstanceUID for o in build_outputs(volume, other)}
    assert not other_uids & {sop for _, sop in uids}


def test_overlay_links_to_its_source_slice(
    outputs: list[OutputObject], case: tuple[Volume, Analysis]
) -> None:
    """Each overlay image carries its source slice's geometry and frame of reference."""
    volume, _ = case
    by_uid = {h.SOPInstanceUID: h for h in volume.headers}
    for ds in _of(outputs, "overlay"):
        source = by_uid[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert ds.ImagePositionPatient == source.ImagePositionPatient
        assert ds.ImageOrientationPatient == source.ImageOrientationPatient
        assert ds.PixelSpacing == source.PixelSpacing
        assert ds.FrameOfReferenceUID == source.FrameOfReferenceUID
        assert ds.SliceLocation == source.SliceLocation
        assert ds.SeriesDescription == "PulmoGate lesions (qct 1.0)"


def test_overlay_marks_lesions_in_colour(
    outputs: list[OutputObject], case: tuple[Volume, Analysis]
) -> None:
    """Ground-glass pixels turn yellowish, consolidation reddish, healthy lung stays grey."""
    volume, analysis = case
    index = {h.SOPInstanceUID: z for z, h in enumerate(volume.headers)}
    z_best, best = None, None
    for ds in _of(outputs, "overlay"):
        z = index[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]
        count = np.count_nonzero(analysis.lesions[z] == 2)
        if best is None or count > np.count_nonzero(analysis.lesions[z_best] == 2):
            z_best, best = z, ds
    assert best is not None and z_best is not None
    rgb = best.pixel_array.astype(int)
    assert rgb.shape == (*volume.hu.shape[1:], 3)
    band = slice(rgb.shape[0] // 5, rgb.shape[0] * 3 // 4)  # away from the text bands
    region = rgb[band]
    lesions = analysis.lesions[z_best][band]
    lungs = analysis.lungs[z_best][band]
    ggo, consolidation = region[lesions == 1], region[lesions == 2]
    healthy = region[(lungs > 0) & (lesions == 0)]
    assert len(ggo) and len(consolidation) and len(healthy)
    assert np.mean(ggo[:, 0] - ggo[:, 2]) > 40  # yellow: red and green over blue
    assert np.mean(consolidation[:, 0] - consolidation[:, 1]) > 40  # red over green
    assert np.abs(healthy[:, 0] - healthy[:, 2]).max() == 0
    for colour in (GGO_COLOUR, CONSOLIDATION_COLOUR):
        assert (rgb == colour).all(axis=2).any()  # the opaque contour


def test_overlay_has_burned_in_text(outputs: list[OutputObject]) -> None:
    """The legend (top) and the figures and disclaimer (bottom) change the image's edges."""
    ds = _of(outputs, "overlay")[0]
    rgb = ds.pixel_array
    assert ds.BurnedInAnnotation == "YES"
    assert rgb[:20].max() > 200 and rgb[-20:].max() > 200


def _render_summary_text(outputs: list[OutputObject]) -> np.ndarray:
    """The summary page's pixels."""
    return _of(outputs, "summary")[0].pixel_array


def test_summary_is_russian_when_asked(
    outputs: list[OutputObject], case: tuple[Volume, Analysis], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Russian page draws the Russian texts (and so differs from the English one)."""
    from pulmogate.inference.outputs import summary

    drawn: list[str] = []
    original = summary.ImageDraw.ImageDraw.text

    def spy(self, xy, text, *args, **kwargs):
        drawn.append(str(text))
        return original(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(summary.ImageDraw.ImageDraw, "text", spy)
    russian = summary.render_summary(*case, language="ru")
    assert "Поддержка принятия решений, не диагноз" in drawn
    assert any("КТ-признаки" in line for line in drawn)
    assert any("Правое лёгкое" in line for line in drawn)
    assert russian.shape == (1280, 1024, 3)
    assert not np.array_equal(russian, _render_summary_text(outputs))


def test_summary_shows_figures_and_disclaimer(case: tuple[Volume, Analysis], monkeypatch) -> None:
    """The English page draws the grade, the model, the disclaimer and each lung's figures."""
    from pulmogate.inference.outputs import summary

    drawn: list[str] = []
    original = summary.ImageDraw.ImageDraw.text

    def spy(self, xy, text, *args, **kwargs):
        drawn.append(str(text))
        return original(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(summary.ImageDraw.ImageDraw, "text", spy)
    _, analysis = case
    summary.render_summary(*case, language="en")
    assert "Decision support, not a diagnosis" in drawn
    assert "CT grade: CT-2" in drawn
    assert "Model: qct 1.0" in drawn
    assert f"{analysis.right.lung_ml:.0f}" in drawn
    assert f"{analysis.total.percent:.1f}" in drawn


def _content_items(item: pydicom.Dataset) -> list[pydicom.Dataset]:
    """All content items of an SR tree, depth first."""
    items = []
    for child in item.get("ContentSequence", []):
        items.append(child)
        items.extend(_content_items(child))
    return items


def test_sr_reports_the_figures_and_references_sources(
    outputs: list[OutputObject], case: tuple[Volume, Analysis]
) -> None:
    """The SR holds volumes in ml, percentages, the grade, and references the CT and the SEG."""
    volume, analysis = case
    sr = _of(outputs, "sr")[0]
    seg = _of(outputs, "seg")[0]
    items = _content_items(sr)
    numbers = [
        (
            i.ConceptNameCodeSequence[0].CodeMeaning,
            float(i.MeasuredValueSequence[0].NumericValue),
            i.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue,
        )
        for i in items
        if i.ValueType == "NUM"
        and i.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue in ("ml", "%")
    ]
    assert ("Volume", round(analysis.right.lung_ml, 2), "ml") in numbers
    assert ("Lesion percent of lung volume", round(analysis.total.percent, 2), "%") in numbers
    assert len(numbers) == 12
    grades = [
        i for i in items if i.ValueType == "CODE" and i.ConceptCodeSequence[0].CodeValue == "CT-2"
    ]
    assert grades
    referenced = {
        ref.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    assert {h.SOPInstanceUID for h in volume.headers} | {seg.SOPInstanceUID} <= referenced
    segment_refs = [
        i
        for i in items
        if i.ValueType == "IMAGE" and "ReferencedSegmentNumber" in i.ReferencedSOPSequence[0]
    ]
    assert {r.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for r in segment_refs} == {
        seg.SOPInstanceUID
    }


def test_seg_has_lungs_and_lesions_as_coded_segments(outputs: list[OutputObject]) -> None:
    """Right lung, left lung, ground-glass and consolidation, automatic, by the model."""
    seg = _of(outputs, "seg")[0]
    segments = {s.SegmentLabel: s for s in seg.SegmentSequence}
    assert list(segments) == ["Right lung", "Left lung", "Ground-glass opacity", "Consolidation"]
    assert segments["Right lung"].SegmentedPropertyTypeCodeSequence[0].CodeValue == "3341006"
    assert segments["Left lung"].SegmentedPropertyTypeCodeSequence[0].CodeValue == "44029006"
    ggo = segments["Ground-glass opacity"]
    assert (
        ggo.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning
        == "Morphologically Abnormal Structure"
    )
    assert all(s.SegmentAlgorithmType == "AUTOMATIC" for s in segments.values())
    assert all(s.SegmentAlgorithmName == "qct" for s in segments.values())
    assert seg.SegmentationType == "BINARY"


def test_empty_lesion_segments_are_omitted(tmp_path: Path) -> None:
    """A study without lesions gives a SEG with the two lungs only and an SR that still builds."""
    volume, analysis = make_case(tmp_path, slices=8, size=64)
    analysis.lesions = np.zeros_like(analysis.lesions)
    outputs = build_outputs(volume, analysis)
    seg = _of(outputs, "seg")[0]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Right lung", "Left lung"]
    assert _of(outputs, "sr")


def test_all_outputs_pass_dciodvfy(outputs: list[OutputObject], tmp_path: Path) -> None:
    """Every kind of object validates with dicom3tools' dciodvfy with no Error lines."""
    if not Path(DCIODVFY).exists():
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    seen: set[str] = set()
    failures = {}
    for output in outputs:
        if output.kind in seen:
            continue
        seen.add(output.kind)
        path = tmp_path / f"{output.kind}.dcm"
        output.dataset.save_as(path, enforce_file_format=True)
        assert pydicom.dcmread(path).PatientName == "ФАНТОМ^ГРУДНАЯ^КЛЕТКА"  # UTF-8 survives
        result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, check=False)
        errors = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if line.startswith("Error")
        ]
        if errors:
            failures[output.kind] = errors
    assert seen == {"overlay", "summary", "sr", "seg"}
    assert not failures, failures


def test_unknown_language_is_refused(case: tuple[Volume, Analysis]) -> None:
    """Only English and Russian pages exist; another language is a clear error."""
    with pytest.raises(ValueError, match="language"):
        build_outputs(*case, language="de")


def test_patient_name_is_not_logged(
    case: tuple[Volume, Analysis], caplog: pytest.LogCaptureFixture
) -> None:
    """Building the outputs logs no patient name or ID."""
    volume, analysis = case
    with caplog.at_level(logging.DEBUG):
        build_outputs(volume, analysis, language="ru")
    assert "ФАНТОМ" not in caplog.text
    assert str(volume.headers[0].PatientID) not in caplog.text


def test_iter_outputs_streams_the_same_objects(case: tuple[Volume, Analysis]) -> None:
    from collections.abc import Iterator

    from pulmogate.inference.outputs import iter_outputs

    streamed = iter_outputs(*case)
    assert isinstance(streamed, Iterator)
    built = build_outputs(*case)
    assert [(o.kind, o.dataset.SOPInstanceUID) for o in streamed] == [
        (o.kind, o.dataset.SOPInstanceUID) for o in built
    ]
