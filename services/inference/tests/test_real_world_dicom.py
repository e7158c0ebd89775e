"""Real-world DICOM never crashes the loader or the output builders.

Each quirk is built on purpose on a phantom series (tests/fixtures/quirks.py): a vendor's
private element that breaks its VR in an Implicit VR file, every transfer syntax the
receiver accepts, pixel padding outside the reconstruction circle, a negative
SpacingBetweenSlices, InstanceNumbers running the other way, anonymised headers, patient
values that break their VR. The series loads (or is refused with a code and a sentence),
the outputs carry what the standard allows, dciodvfy finds no error in them, and no
attribute value reaches a log, a warning or a refusal.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from pulmogate.common.refusals import Refusal, RefusalCode
from pulmogate.inference.outputs import OutputObject, build_outputs, input_notes
from pulmogate.inference.volume import Volume, load_volume
from pulmogate.tools.phantom import Phantom
from tests.fixtures import quirks

DCIODVFY = shutil.which("dciodvfy") or "/usr/bin/dciodvfy"
needs_dcmtk = pytest.mark.skipif(not Path("/usr/bin/dcmconv").exists(), reason="dcmtk missing")
SLICES, SIZE = 20, 64


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Phantom, Path]:
    """A phantom series written once, Explicit VR Little Endian, full header."""
    folder = tmp_path_factory.mktemp("plain")
    return quirks.phantom_series(folder, slices=SLICES, size=SIZE), folder


def _refusal(sources: list) -> Refusal:
    with pytest.raises(Refusal) as caught:
        load_volume(sources)
    return caught.value


def _outputs(phantom: Phantom, volume: Volume) -> list[OutputObject]:
    return build_outputs(volume, quirks.truth_analysis(phantom, volume))


def _dciodvfy_errors(outputs: list[OutputObject], tmp_path: Path) -> dict[str, list[str]]:
    """dciodvfy's Error lines for one object of each kind."""
    errors: dict[str, list[str]] = {}
    done: set[str] = set()
    for output in outputs:
        if output.kind in done:
            continue
        done.add(output.kind)
        path = tmp_path / f"{output.kind}.dcm"
        output.dataset.save_as(path, enforce_file_format=True)
        result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True)
        lines = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if line.startswith("Error")
        ]
        if lines:
            errors[output.kind] = lines
    assert done == {"overlay", "summary", "sr", "seg"}
    return errors


def test_a_private_element_that_breaks_its_vr_in_implicit_vr_does_not_stop_the_load(
    plain: tuple[Phantom, Path], tmp_path: Path
) -> None:
    """`BytesLengthException … (01F1,1026)`: the loader never decodes what it does not use."""
    phantom, folder = plain
    datasets = quirks.read(folder)
    quirks.add_vendor_private_element(datasets)
    paths = quirks.write(datasets, tmp_path / "implicit", implicit=True)
    reread = pydicom.dcmread(paths[0])
    assert reread.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    with pytest.raises(Exception, match=r"\(01F1,1026\)"):  # walking every element fails
        list(reread)
    volume = load_volume(paths)
    np.testing.assert_array_equal(volume.hu, phantom.hu)
    assert all(quirks.PRIVATE_TAG not in h for h in volume.headers)
    assert not _dciodvfy_errors(_outputs(phantom, volume), tmp_path)


# (name, dcmtk tool and options, transfer syntax, bits stored, largest and mean |HU error|)
DCMTK_SYNTAXES = [
    ("implicit", ("dcmconv", "+ti"), ImplicitVRLittleEndian, 16, 0, 0),
    ("big-endian", ("dcmconv", "+tb"), ExplicitVRBigEndian, 16, 0, 0),
    ("deflated", ("dcmconv", "+td"), DeflatedExplicitVRLittleEndian, 16, 0, 0),
    ("jpeg-lossless-p14", ("dcmcjpeg", "+el"), JPEGLossless, 16, 0, 0),
    ("jpeg-lossless-sv1", ("dcmcjpeg", "+e1"), JPEGLosslessSV1, 16, 0, 0),
    ("jpeg-extended-12bit", ("dcmcjpeg", "+ee"), JPEGExtended12Bit, 12, 400, 10),
    ("jpeg-baseline-8bit", ("dcmcjpeg", "+eb"), JPEGBaseline8Bit, 8, 400, 30),
    ("jpeg-ls-lossless", ("dcmcjpls", "+el"), JPEGLSLossless, 16, 0, 0),
    ("jpeg-ls-near-lossless", ("dcmcjpls", "+en", "+md", "2"), JPEGLSNearLossless, 16, 2, 2),
]


def _with_bits_stored(folder: Path, phantom: Phantom, bits: int, out: Path) -> Path:
    """The series with fewer bits stored (12: as many CT scanners write; 8: unsigned bytes
    with a rescale slope of 8, the only CT that JPEG Baseline can carry)."""
    datasets = quirks.read(folder)
    for k, ds in enumerate(datasets):
        ds.BitsStored, ds.HighBit = bits, bits - 1
        if bits == 8:
            stored = np.clip((phantom.hu[k].astype(np.int32) + 1024) // 8, 0, 255)
            ds.BitsAllocated, ds.RescaleSlope = 8, "8"
            ds.PixelData = stored.astype(np.uint8).tobytes()
    quirks.write(datasets, out)
    return out


@needs_dcmtk
@pytest.mark.parametrize(
    ("tool", "syntax", "bits", "largest", "mean"),
    [s[1:] for s in DCMTK_SYNTAXES],
    ids=[s[0] for s in DCMTK_SYNTAXES],
)
def test_every_accepted_transfer_syntax_decodes(
    plain: tuple[Phantom, Path],
    tmp_path: Path,
    tool: tuple[str, ...],
    syntax: str,
    bits: int,
    largest: int,
    mean: float,
) -> None:
    """Files converted by dcmtk (the encoders PACS use), sent in any order, load to the
    phantom's HU: exactly when lossless, within the codec's error when lossy."""
    phantom, folder = plain
    source = folder if bits == 16 else _with_bits_stored(folder, phantom, bits, tmp_path / "b")
    paths = quirks.dcmtk_convert(source, tmp_path / "converted", *tool)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == syntax
    shuffled = [paths[i] for i in np.random.default_rng(3).permutation(len(paths))]
    volume = load_volume(shuffled)
    error = np.abs(volume.hu.astype(np.int32) - phantom.hu)
    assert int(error.max()) <= largest
    assert float(error.mean()) <= mean


def test_lossy_jpeg_2000_decodes(plain: tuple[Phantom, Path], tmp_path: Path) -> None:
    """JPEG 2000 (lossy allowed), the one accepted syntax dcmtk has no encoder for."""
    phantom, folder = plain
    datasets = quirks.read(folder)
    for ds in datasets:
        ds.compress(JPEG2000, j2k_cr=[4], use_mct=False)
    paths = quirks.write(datasets, tmp_path / "j2k")
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == JPEG2000
    volume = load_volume(paths)
    assert float(np.abs(volume.hu.astype(np.int32) - phantom.hu).mean()) < 20


@pytest.mark.parametrize("style", quirks.PADDING_STYLES)
def test_padding_outside_the_reconstruction_circle_reads_as_air(
    plain: tuple[Phantom, Path], tmp_path: Path, style: str
) -> None:
    """-2048 stored, PixelPaddingValue at -3024 HU, or in the bits above BitsStored: -1000 HU,
    so the segmenter sees air there; inside the circle every value is kept."""
    phantom, folder = plain
    datasets = quirks.read(folder)
    quirks.pad_outside_circle(datasets, phantom.hu, style)
    volume = load_volume(quirks.write(datasets, tmp_path / style))
    outside = quirks.outside_circle(SIZE)
    assert set(np.unique(volume.hu[:, outside]).tolist()) == {-1000}
    inside = phantom.hu[:, ~outside]
    np.testing.assert_array_equal(volume.hu[:, ~outside], np.clip(inside, -1024, 3071))


def test_negative_spacing_and_instance_numbers_the_other_way(
    plain: tuple[Phantom, Path], tmp_path: Path
) -> None:
    """The stack is sorted by position; the outputs carry positive spacings."""
    phantom, folder = plain
    datasets = quirks.read(folder)
    quirks.negative_spacing(datasets, phantom.spacing[0])
    quirks.reverse_instance_numbers(datasets)
    paths = quirks.write(datasets, tmp_path / "reversed")
    volume = load_volume(paths[::-1])
    np.testing.assert_array_equal(volume.hu, phantom.hu)
    assert volume.spacing[0] == pytest.approx(phantom.spacing[0])
    assert [int(h.InstanceNumber) for h in volume.headers] == list(range(SLICES, 0, -1))
    assert all("SpacingBetweenSlices" not in h for h in volume.headers)
    outputs = _outputs(phantom, volume)
    seg = next(o.dataset for o in outputs if o.kind == "seg")
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SpacingBetweenSlices) == pytest.approx(phantom.spacing[0])
    assert float(measures.SliceThickness) > 0
    assert not _dciodvfy_errors(outputs, tmp_path)


def test_anonymised_headers_give_outputs_with_the_type_2_attributes_empty(
    plain: tuple[Phantom, Path], tmp_path: Path
) -> None:
    """Type 2 attributes missing in the input are written empty in every output, which
    dciodvfy accepts; the job log says which were missing."""
    phantom, folder = plain
    datasets = quirks.read(folder)
    quirks.anonymise(datasets)
    volume = load_volume(quirks.write(datasets, tmp_path / "anonymised"))
    assert input_notes(volume) == [
        "PatientName, PatientID, PatientBirthDate, PatientSex, StudyDate, StudyTime, StudyID, "
        "AccessionNumber, ReferringPhysicianName missing in the input (an anonymised header?): "
        "written empty in the outputs"
    ]
    outputs = _outputs(phantom, volume)
    for output in outputs:
        for keyword in quirks.TYPE2_PATIENT_STUDY:
            assert keyword in output.dataset, (output.kind, keyword)
            assert str(output.dataset[keyword].value or "") == "", (output.kind, keyword)
        assert str(output.dataset.StudyInstanceUID) == volume.study_uid
    assert not _dciodvfy_errors(outputs, tmp_path)


@pytest.mark.parametrize(
    "values", [quirks.BAD_PATIENT_VALUES, quirks.IMPOSSIBLE_DATE], ids=["bad-values", "30-feb"]
)
def test_patient_values_that_break_their_vr_are_dropped_with_a_note_naming_the_attribute(
    plain: tuple[Phantom, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    values: dict[str, str],
) -> None:
    """PHIBDAY, 19560230, a second PatientName, an embedded NUL: the outputs are built, the
    value is written empty (type 2) or left out (type 3), a note names the attribute, and
    the value appears in no note, log record or warning."""
    phantom, folder = plain
    datasets = quirks.read(folder)
    quirks.set_values(datasets, values)
    paths = quirks.write(datasets, tmp_path / "bad")
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        volume = load_volume(paths)
        notes = input_notes(volume)
        outputs = _outputs(phantom, volume)
    for keyword in values:
        assert any(note.startswith(f"{keyword} of the input ") for note in notes), notes
    said = "\n".join([*notes, caplog.text, *(str(w.message) for w in caught)])
    for value in values.values():
        for part in value.replace("\x00", "\\").split("\\"):
            if len(part) > 3:
                assert part not in said, part
    for output in outputs:
        for keyword in values:
            if keyword in quirks.TYPE2_PATIENT_STUDY:
                assert str(output.dataset[keyword].value or "") == "", (output.kind, keyword)
            else:
                assert keyword not in output.dataset, (output.kind, keyword)
    assert not _dciodvfy_errors(outputs, tmp_path)


def test_a_missing_frame_of_reference_is_derived_from_the_series(
    plain: tuple[Phantom, Path], tmp_path: Path
) -> None:
    phantom, folder = plain
    datasets = quirks.read(folder)
    for ds in datasets:
        del ds.FrameOfReferenceUID
    volume = load_volume(quirks.write(datasets, tmp_path / "no-frame"))
    frames = {str(h.FrameOfReferenceUID) for h in volume.headers}
    assert len(frames) == 1 and next(iter(frames)).startswith("2.25.")
    assert "FrameOfReferenceUID is missing in the input" in input_notes(volume)[0]
    seg = next(o.dataset for o in _outputs(phantom, volume) if o.kind == "seg")
    assert seg.FrameOfReferenceUID in frames


def test_a_missing_sop_instance_uid_is_taken_from_the_file_meta(
    plain: tuple[Phantom, Path], tmp_path: Path
) -> None:
    _, folder = plain
    datasets = quirks.read(folder)
    expected = [str(ds.SOPInstanceUID) for ds in datasets]
    for ds in datasets:
        del ds.SOPInstanceUID
    paths = quirks.write(datasets, tmp_path / "no-sop")
    assert [str(h.SOPInstanceUID) for h in load_volume(paths).headers] == expected


def _mutated(folder: Path, keyword: str, value: object, index: int = 3) -> list[pydicom.Dataset]:
    """The series with one value set as a PACS would store it: text as raw bytes, unparsed."""
    datasets = quirks.read(folder)
    if isinstance(value, (str, list)):
        quirks.set_raw(datasets[index], keyword, value)
    else:
        setattr(datasets[index], keyword, value)
    return datasets


REFUSED = [
    (
        "series mixed",
        "SeriesInstanceUID",
        "1.2.826.0.99",
        RefusalCode.MIXED_SERIES,
        "the slices carry 2 different SeriesInstanceUID values; one series is analysed at a time",
    ),
    (
        "rescale slope not a number",
        "RescaleSlope",
        "PHISLOPE",
        RefusalCode.UNREADABLE_HEADER,
        "slice 4: RescaleSlope is not a number; correct it at the modality or PACS and send "
        "the series again",
    ),
    (
        "position not numbers",
        "ImagePositionPatient",
        ["PHIX", "0", "0"],
        RefusalCode.INCONSISTENT_GEOMETRY,
        "slice 4: ImagePositionPatient is not a list of numbers",
    ),
    (
        "colour",
        "SamplesPerPixel",
        3,
        RefusalCode.UNSUPPORTED_PIXEL_DATA,
        "slice 4 is a colour image (3 samples per pixel, MONOCHROME2); CT slices are greyscale",
    ),
    (
        "invalid UID",
        "SOPInstanceUID",
        "1.2.PHI.3",
        RefusalCode.UNREADABLE_HEADER,
        "slice 4: SOPInstanceUID is not a valid UID",
    ),
]


@pytest.mark.parametrize(
    ("keyword", "value", "code", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_what_cannot_be_used_is_refused_with_a_code_and_no_value(
    plain: tuple[Phantom, Path], keyword: str, value: object, code: RefusalCode, message: str
) -> None:
    _, folder = plain
    refusal = _refusal(_mutated(folder, keyword, value))
    assert (refusal.code, refusal.message) == (code, message)
    assert "PHI" not in str(refusal)
