"""The four kinds of result agree with each other and with the standard.

One source per case: a Latin-1 (ISO_IR 100) series with IssuerOfPatientID, PatientAge and
BodyPartExamined CHEST, and the same series without BodyPartExamined. Every result copies
the same patient and study attributes, is written in UTF-8 (ISO_IR 192), carries no
Laterality, and dciodvfy finds no error in it. The SR and the SEG use standard codes (SNOMED
CT, DCM, UCUM) except the two documented private ones, every code value fits CodeValue, and
highdicom reads every measurement group, segment reference and the text impression back.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom
import pytest

from pulmogate.inference.analysis import Analysis
from pulmogate.inference.outputs import OutputObject, build_outputs
from pulmogate.inference.outputs.attributes import COPIED_ATTRIBUTES
from pulmogate.inference.volume import Volume, load_volume
from pulmogate.tools.phantom import Phantom
from tests.fixtures import quirks

DCIODVFY = shutil.which("dciodvfy") or "/usr/bin/dciodvfy"
KINDS = {"overlay", "summary", "sr", "seg"}
NAME = "MÜLLER^JÖRG"
STANDARD_SCHEMES = {"SCT", "DCM", "UCUM", "LN", "UMLS", "RFC5646"}
PRIVATE_CODES = {"PG-INVOLVEMENT", "CT-0", "CT-1", "CT-2", "CT-3", "CT-4"}


@pytest.fixture(scope="module")
def phantom_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Phantom, Path]:
    folder = tmp_path_factory.mktemp("conformance")
    return quirks.phantom_series(folder, slices=20, size=64), folder


def _latin1_source(folder: Path, out: Path, *, body_part: bool) -> Volume:
    datasets = quirks.read(folder)
    for ds in datasets:
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = NAME
        ds.IssuerOfPatientID = "HÔPITAL NORD"
        ds.PatientAge = "064Y"
        ds.StudyDescription = "Thorax nativ, Lunge"
        if body_part:
            ds.BodyPartExamined = "CHEST"
    paths = quirks.write(datasets, out)
    assert pydicom.dcmread(paths[0]).SpecificCharacterSet == "ISO_IR 100"
    assert NAME.encode("latin-1") in paths[0].read_bytes()  # really Latin-1 on disk
    return load_volume(paths)


@pytest.fixture(scope="module", params=[True, False], ids=["chest", "no-body-part"])
def case(
    request: pytest.FixtureRequest,
    phantom_folder: tuple[Phantom, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Volume, Analysis, list[OutputObject]]:
    phantom, folder = phantom_folder
    volume = _latin1_source(folder, tmp_path_factory.mktemp("latin1"), body_part=request.param)
    analysis = quirks.truth_analysis(phantom, volume)
    return volume, analysis, build_outputs(volume, analysis)


def _one_of_each(outputs: list[OutputObject]) -> dict[str, pydicom.Dataset]:
    first: dict[str, pydicom.Dataset] = {}
    for output in outputs:
        first.setdefault(output.kind, output.dataset)
    assert set(first) == KINDS
    return first


def _saved(ds: pydicom.Dataset, path: Path) -> pydicom.Dataset:
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def test_every_kind_copies_the_same_patient_and_study_in_utf8(
    case: tuple[Volume, Analysis, list[OutputObject]], tmp_path: Path
) -> None:
    volume, _, outputs = case
    source = volume.headers[0]
    for kind, ds in _one_of_each(outputs).items():
        written = _saved(ds, tmp_path / f"{kind}.dcm")
        assert written.SpecificCharacterSet == "ISO_IR 192", kind
        assert NAME.encode("utf-8") in (tmp_path / f"{kind}.dcm").read_bytes(), kind
        for keyword, _, _, _ in COPIED_ATTRIBUTES:
            assert str(written.get(keyword, "")) == str(source.get(keyword, "")), (kind, keyword)
        assert written.IssuerOfPatientID == "HÔPITAL NORD" and written.PatientAge == "064Y"


def test_no_result_carries_laterality_and_dciodvfy_finds_no_error(
    case: tuple[Volume, Analysis, list[OutputObject]], tmp_path: Path
) -> None:
    if not Path(DCIODVFY).exists():
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    _, _, outputs = case
    errors: dict[str, list[str]] = {}
    for kind, ds in _one_of_each(outputs).items():
        assert "Laterality" not in ds, kind
        path = tmp_path / f"{kind}.dcm"
        ds.save_as(path, enforce_file_format=True)
        result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True)
        found = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if line.startswith("Error") or "Laterality" in line
        ]
        if found:
            errors[kind] = found
    assert not errors, errors
    for kind in ("overlay", "summary"):
        assert _one_of_each(outputs)[kind].BodyPartExamined == "CHEST"


def _codes(item: pydicom.Dataset) -> Iterator[pydicom.Dataset]:
    """Every code sequence item in a dataset, depth first."""
    for element in item:
        if element.VR != "SQ":
            continue
        for child in element.value:
            if "CodeMeaning" in child:
                yield child
            yield from _codes(child)


def test_codes_are_standard_except_the_documented_private_ones(
    case: tuple[Volume, Analysis, list[OutputObject]],
) -> None:
    _, _, outputs = case
    kinds = _one_of_each(outputs)
    private: set[str] = set()
    for kind in ("sr", "seg"):
        for code in _codes(kinds[kind]):
            assert "LongCodeValue" not in code and "URNCodeValue" not in code, kind
            assert len(str(code.CodeValue)) <= 16
            scheme = str(code.CodingSchemeDesignator)
            if scheme == "99PULMOGATE":
                private.add(str(code.CodeValue))
            else:
                assert scheme in STANDARD_SCHEMES, (kind, scheme)
    assert private <= PRIVATE_CODES and "PG-INVOLVEMENT" in private
    seg = kinds["seg"]
    types = {
        s.SegmentLabel: (
            s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
            s.SegmentedPropertyTypeCodeSequence[0].CodeValue,
        )
        for s in seg.SegmentSequence
    }
    assert types == {
        "Right lung": ("SCT", "3341006"),
        "Left lung": ("SCT", "44029006"),
        "Ground-glass opacity": ("DCM", "112120"),
        "Consolidation": ("SCT", "95436008"),
    }
    assert "CodingSchemeIdentificationSequence" not in seg  # nothing private left in it


def test_highdicom_reads_every_group_segment_reference_and_the_impression(
    case: tuple[Volume, Analysis, list[OutputObject]], tmp_path: Path
) -> None:
    _, analysis, outputs = case
    kinds = _one_of_each(outputs)
    seg, path = kinds["seg"], tmp_path / "sr.dcm"
    kinds["sr"].save_as(path, enforce_file_format=True)
    report = hd.sr.srread(path)
    # A MeasurementReport (TID 1500), which highdicom types as a bare ContentSequence.
    content: Any = report.content
    labels = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    referenced = {}
    for group in content.get_volumetric_roi_measurement_groups():
        segment = group.referenced_segment
        assert segment is not None
        assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        [number] = segment.referenced_segment_numbers
        referenced[str(group.finding_type.meaning)] = labels[number]
    assert referenced == {
        "Right lung": "Right lung",
        "Left lung": "Left lung",
        "Ground glass opacity": "Ground-glass opacity",
        "Lung consolidation": "Consolidation",
    }
    others = content.get_image_measurement_groups()
    assert len(others) == 5  # both lungs, and each lesion in each lung
    total = next(g for g in others if g.finding_type.value == "39607008")
    assert [(q.name.value, q.value.value) for q in total.get_qualitative_evaluations()] == [
        ("246112005", f"CT-{analysis.grade}")
    ]
    volumes = {
        (str(g.finding_type.meaning), str(g.finding_sites[0].value.meaning)): m.value
        for g in others
        for m in g.get_measurements()
        if m.name.value == "118565006"
    }
    assert volumes[("Ground glass opacity", "Right lung")] == pytest.approx(
        round(analysis.right.ggo_ml, 2)
    )
    texts = [
        item.TextValue
        for item in _content_items(pydicom.dcmread(path))
        if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == "121073"
    ]
    assert texts == [analysis.prediction("en")]


def _content_items(item: pydicom.Dataset) -> list[pydicom.Dataset]:
    items = []
    for child in item.get("ContentSequence", []):
        items.append(child)
        items.extend(_content_items(child))
    return items


def test_the_impression_follows_the_language(
    case: tuple[Volume, Analysis, list[OutputObject]],
) -> None:
    volume, analysis, _ = case
    sr = next(o.dataset for o in build_outputs(volume, analysis, language="ru") if o.kind == "sr")
    texts = [i.TextValue for i in _content_items(sr) if i.ValueType == "TEXT"]
    assert analysis.prediction("ru") in texts
    languages = [
        i.ConceptCodeSequence[0].CodeValue
        for i in _content_items(sr)
        if i.ValueType == "CODE" and i.ConceptNameCodeSequence[0].CodeValue == "121049"
    ]
    assert languages == ["ru-RU"]
