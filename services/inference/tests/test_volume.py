"""load_volume: sorting, rescale, compressed syntaxes, real samples, every refusal by its message.

Gantry-tilted and non-axial series are refused, not resampled: resampling would change
the voxel grid that the overlay and SEG outputs must share with the source series.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless
from scipy import ndimage

from pulmogate.common.refusals import Refusal, RefusalCode
from pulmogate.inference.analysis import analyse
from pulmogate.inference.volume import load_volume
from pulmogate.tools.phantom import Phantom, make_phantom, write_series

DATA = Path("/work/shared/data")
ABDOMEN_J2K = DATA / "abdomen_ct_j2k"
CHEST_SLICE = DATA / "chest_slice_lidc" / "0.dcm"
needs_abdomen = pytest.mark.skipif(not ABDOMEN_J2K.is_dir(), reason="abdomen sample missing")
needs_chest_slice = pytest.mark.skipif(not CHEST_SLICE.is_file(), reason="chest sample missing")

SLICES, SIZE, THICKNESS = 20, 48, 1.25


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    """A small phantom; its slices are written once and read fresh by each test."""
    return make_phantom(slices=SLICES, size=SIZE, slice_thickness_mm=THICKNESS, seed=5)


@pytest.fixture(scope="module")
def paths(phantom: Phantom, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The phantom written as an uncompressed CT series."""
    return write_series(phantom, tmp_path_factory.mktemp("ct"), patient_id="PG-VOL-1")


def _datasets(paths: list[Path]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in paths]


def _refusal(sources: list, **limits: float) -> Refusal:
    with pytest.raises(Refusal) as caught:
        load_volume(sources, **limits)  # type: ignore[arg-type]
    return caught.value


def test_sorts_by_position_and_applies_rescale(phantom: Phantom, paths: list[Path]) -> None:
    shuffled = [paths[i] for i in np.random.default_rng(1).permutation(len(paths))]
    volume = load_volume(shuffled)
    assert volume.hu.dtype == np.int16
    np.testing.assert_array_equal(volume.hu, phantom.hu)  # stored = HU + 1024, intercept -1024
    assert volume.spacing == pytest.approx(phantom.spacing)
    assert np.all(np.diff(volume.positions[:, 2]) > 0)
    assert [int(h.InstanceNumber) for h in volume.headers] == list(range(1, SLICES + 1))
    assert all("PixelData" not in h for h in volume.headers)


def test_rescale_slope_is_applied(paths: list[Path], phantom: Phantom) -> None:
    datasets = _datasets(paths)
    for ds in datasets:  # the same HU stored at half the value with slope 2
        stored = (phantom.hu[int(ds.InstanceNumber) - 1].astype(np.int32) + 1024) // 2
        ds.PixelData = stored.astype(np.uint16).tobytes()
        ds.RescaleSlope = "2"
    volume = load_volume(datasets)
    assert np.abs(volume.hu.astype(int) - phantom.hu).max() <= 1


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless], ids=str)
def test_compressed_syntaxes_decode_losslessly(
    syntax: str, tmp_path: Path, phantom: Phantom
) -> None:
    small = Phantom(phantom.hu[:16], phantom.spacing, phantom.lungs[:16], phantom.lesions[:16])
    written = write_series(small, tmp_path, transfer_syntax=syntax)
    assert pydicom.dcmread(written[0]).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(load_volume(written).hu, small.hu)


def _abdomen() -> list[pydicom.Dataset]:
    """The real abdomen sample with the Study, Series and SOP Instance UIDs it has empty
    filled in (the receiver refuses such files; these tests are about its pixels)."""
    datasets: list[pydicom.Dataset] = [pydicom.dcmread(p) for p in sorted(ABDOMEN_J2K.iterdir())]
    for ds in datasets:
        ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.1", "1.2.826.0.1.1.1"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    return datasets


@needs_abdomen
def test_real_series_without_study_and_series_uids_is_refused() -> None:
    """The sample's StudyInstanceUID is empty: the results could not join its study."""
    refusal = _refusal(sorted(ABDOMEN_J2K.iterdir()), max_slice_thickness_mm=3.0)
    assert (refusal.code, refusal.message) == (
        RefusalCode.UNREADABLE_HEADER,
        "slice 286 has no StudyInstanceUID; the results could not be linked to it",
    )


@needs_abdomen
def test_real_jpeg2000_series_decodes() -> None:
    files = sorted(ABDOMEN_J2K.iterdir())
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == JPEG2000Lossless
    volume = load_volume(_abdomen(), max_slice_thickness_mm=3.0)
    assert volume.hu.shape == (20, 512, 512)
    assert volume.spacing[1:] == pytest.approx((0.9765625, 0.9765625))
    assert np.all(np.diff(volume.positions[:, 2]) > 0)
    assert np.percentile(volume.hu, 5) < -900  # air around the patient
    assert volume.hu.max() > 500  # bone
    assert -100 < np.median(volume.hu[volume.hu > -500]) < 200  # soft tissue


@needs_abdomen
def test_real_3mm_series_is_too_thick() -> None:
    refusal = _refusal(sorted(ABDOMEN_J2K.iterdir()))
    assert refusal.code == RefusalCode.SLICE_TOO_THICK
    assert refusal.message == "slice thickness 3.0 mm exceeds the 2.5 mm limit"


@needs_abdomen
def test_real_abdomen_is_not_a_chest() -> None:
    volume = load_volume(_abdomen(), max_slice_thickness_mm=3.0)
    with pytest.raises(Refusal) as caught:
        analyse(volume)
    assert caught.value.code == RefusalCode.NO_LUNGS
    assert "not a chest CT?" in caught.value.message


def _chest_stack(count: int) -> list[pydicom.Dataset]:
    """The real chest slice repeated ``count`` times, 1 mm apart (a lung-finder check)."""
    stack: list[pydicom.Dataset] = []
    for k in range(count):
        ds = pydicom.dcmread(CHEST_SLICE, force=True)
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        ds.InstanceNumber = k + 1
        stack.append(ds)
    return stack


@needs_chest_slice
def test_lung_finder_on_a_real_chest_slice() -> None:
    volume = load_volume(_chest_stack(16))
    analysis = analyse(volume)
    middle = analysis.lungs[8]
    hu = volume.hu[8]
    for label, side in ((1, slice(0, 256)), (2, slice(256, 512))):
        lung = middle == label
        assert np.count_nonzero(lung[:, side]) > 0.95 * np.count_nonzero(lung)
        assert np.count_nonzero(lung) * 0.625**2 > 5000  # mm2: a whole lung, not a bronchus
    body = ndimage.binary_fill_holes(ndimage.binary_opening(hu > -500, iterations=2))
    aerated_in_body = (hu < -800) & body
    # Nearly all aerated tissue inside the body is lung (the rest: trachea, bronchi) ...
    assert np.count_nonzero(aerated_in_body & (middle == 0)) < 0.05 * np.count_nonzero(middle)
    # ... and the lungs stay inside the body.
    assert np.count_nonzero((middle > 0) & ~body) == 0
    assert analysis.right.lung_ml > 0 and analysis.left.lung_ml > 0


MutateFn = Callable[[list[pydicom.Dataset]], list[pydicom.Dataset]]


def _drop_pixels(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    del ds[5].PixelData
    return ds


def _smaller_slice(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    ds[3].Rows = ds[3].Columns = 32
    ds[3].PixelData = bytes(32 * 32 * 2)
    return ds


def _other_spacing(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    ds[2].PixelSpacing = [0.8, 0.8]
    return ds


def _duplicate(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    ds[7].ImagePositionPatient = ds[6].ImagePositionPatient
    return ds


def _gap(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    return ds[:9] + ds[11:]


def _tilt(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    for k, d in enumerate(ds):  # each slice shifted in y by z * tan(15 degrees)
        x, y, z = (float(v) for v in d.ImagePositionPatient)
        d.ImagePositionPatient = [x, y + k * THICKNESS * math.tan(math.radians(15)), z]
    return ds


def _orientation(iop: list[float]) -> MutateFn:
    def mutate(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
        for d in ds:
            d.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
        return ds

    return mutate


def _mixed_orientation(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    ds[4].ImageOrientationPatient = [1, 0, 0, 0, 0.9, 0.1]
    return ds


def _thick(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    for d in ds:
        d.SliceThickness = "5"
    return ds


def _sparse_without_thickness(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    for k, d in enumerate(ds):
        del d.SliceThickness
        x, y, _ = (float(v) for v in d.ImagePositionPatient)
        d.ImagePositionPatient = [x, y, 4.0 * k]
    return ds


def _few(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    return ds[:10]


def _mr(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    for d in ds:
        d.Modality = "MR"
    return ds


def _multiframe(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    ds[0].NumberOfFrames = 2
    return ds


def _no_position(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    del ds[2].ImagePositionPatient
    return ds


def _short_pixels(ds: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    ds[1].PixelData = ds[1].PixelData[:100]
    return ds


TILT_20 = [1, 0, 0, 0, math.cos(math.radians(20)), -math.sin(math.radians(20))]
REFUSALS: list[tuple[str, MutateFn, RefusalCode, str]] = [
    ("missing pixel data", _drop_pixels, RefusalCode.MISSING_PIXEL_DATA,
     "slice 6 has no pixel data"),
    ("mixed sizes", _smaller_slice, RefusalCode.INCONSISTENT_GEOMETRY,
     f"slice 4 is 32x32 pixels, slice 1 is {SIZE}x{SIZE}"),
    ("mixed pixel spacing", _other_spacing, RefusalCode.INCONSISTENT_GEOMETRY,
     "slice 3 has pixel spacing 0.8x0.8 mm, slice 1 has 0.7x0.7 mm"),
    ("duplicate positions", _duplicate, RefusalCode.DUPLICATE_POSITIONS,
     "slices 7 and 8 share the position 7.50 mm along the slice normal"),
    ("gap", _gap, RefusalCode.SLICE_GAP,
     "3.75 mm between slices at 10.00 and 13.75 mm, more than 1.5x the median spacing "
     "of 1.25 mm (missing slices?)"),
    ("gantry tilt", _tilt, RefusalCode.GANTRY_TILT,
     "slice positions are sheared by 15.0 degrees (gantry tilt); tilted acquisitions are "
     "not analysed"),
    ("coronal", _orientation([1, 0, 0, 0, 0, -1]), RefusalCode.NOT_AXIAL,
     "slice normal is 90.0 degrees from the patient's head-feet axis; only axial series "
     "are analysed"),
    ("oblique", _orientation(TILT_20), RefusalCode.NOT_AXIAL,
     "slice normal is 20.0 degrees from the patient's head-feet axis; only axial series "
     "are analysed"),
    ("rotated in plane", _orientation([0.8, 0.6, 0, -0.6, 0.8, 0]), RefusalCode.NOT_AXIAL,
     "rows and columns are not aligned with the patient's left-right and front-back axes "
     "(rotated axial image)"),
    ("mixed orientation", _mixed_orientation, RefusalCode.INCONSISTENT_GEOMETRY,
     "slices have different ImageOrientationPatient values"),
    ("too thick", _thick, RefusalCode.SLICE_TOO_THICK,
     "slice thickness 5.0 mm exceeds the 2.5 mm limit"),
    ("spacing too large", _sparse_without_thickness, RefusalCode.SLICE_TOO_THICK,
     "slice spacing 4.0 mm exceeds the 2.5 mm limit"),
    ("too few slices", _few, RefusalCode.TOO_FEW_SLICES,
     "10 slices, at least 16 are needed"),
    ("not CT", _mr, RefusalCode.NOT_CT, "modality MR is not CT"),
    ("multi-frame", _multiframe, RefusalCode.INCONSISTENT_GEOMETRY,
     "multi-frame CT (2 frames) is not supported; send the series as single-frame CT "
     "Image Storage"),
    ("no position", _no_position, RefusalCode.INCONSISTENT_GEOMETRY,
     "slice 3 has no ImagePositionPatient (slice position)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "code", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refusals(paths: list[Path], mutate: MutateFn, code: RefusalCode, message: str) -> None:
    refusal = _refusal(mutate(_datasets(paths)))
    assert refusal.code == code
    assert refusal.message == message


def test_undecodable_pixel_data_is_refused(paths: list[Path]) -> None:
    refusal = _refusal(_short_pixels(_datasets(paths)))
    assert (refusal.code, refusal.message) == (
        RefusalCode.UNSUPPORTED_PIXEL_DATA,
        "the pixel data of slice 2 cannot be decoded as Explicit VR Little Endian "
        "(1.2.840.10008.1.2.1): it is damaged or shorter than its Rows, Columns and bits "
        "say; send the series again",
    )


def test_unreadable_files_are_refused(tmp_path: Path, paths: list[Path]) -> None:
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"not a DICOM file " * 8)
    refusal = _refusal([garbage, *paths[1:]])
    assert (refusal.code, refusal.message) == (
        RefusalCode.UNREADABLE,
        "garbage.dcm is not a DICOM image",
    )
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(paths[0].read_bytes()[:400])  # cut inside the header: no pixel data
    refusal = _refusal([cut, *paths[1:]])
    assert (refusal.code, refusal.message) == (
        RefusalCode.MISSING_PIXEL_DATA,
        "slice cut.dcm has no pixel data",
    )


def test_empty_series_is_refused() -> None:
    refusal = _refusal([])
    assert (refusal.code, refusal.message) == (
        RefusalCode.TOO_FEW_SLICES,
        "the series has no slices",
    )


# Extreme geometry: refused with a reason or loaded within memory, never a crash.


def _synthetic(count: int, size: int, pixel_data: bytes, thickness: float = 1.0) -> list:
    """``count`` in-memory CT headers of ``size`` x ``size`` sharing one pixel buffer."""
    datasets = []
    for k in range(count):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.Modality = "CT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.2", "1.2.826.0.1.2.1"
        ds.SOPInstanceUID = f"1.2.826.0.1.2.1.{k + 1}"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, k * thickness]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.5, 0.5]
        ds.SliceThickness = thickness
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = pixel_data
        datasets.append(ds)
    return datasets


@needs_chest_slice
def test_one_slice_is_refused() -> None:
    refusal = _refusal(_chest_stack(1))
    assert refusal.message == "1 slices, at least 16 are needed"
    volume = load_volume(_chest_stack(1), min_slices=1)  # allowed: z spacing from thickness
    assert volume.spacing[0] == pytest.approx(1.0)
    with pytest.raises(Refusal) as caught:  # 1 mm of lung is no chest CT
        analyse(volume)
    assert caught.value.code == RefusalCode.NO_LUNGS


def test_2048_matrix_loads_within_memory() -> None:
    plane = np.full((2048, 2048), -1000, np.int16)
    volume = load_volume(_synthetic(16, 2048, plane.tobytes()))
    assert volume.hu.shape == (16, 2048, 2048)
    assert volume.hu.nbytes == 16 * 2048 * 2048 * 2  # int16: 128 MiB
    assert volume.spacing == (1.0, 0.5, 0.5)


def test_too_many_voxels_refused_before_decoding() -> None:
    # Empty pixel buffers: a refusal after decoding would be UNREADABLE, not TOO_LARGE.
    for count, size in ((1400, 512), (100, 2048)):
        refusal = _refusal(_synthetic(count, size, b"", thickness=0.5))
        assert refusal.code == RefusalCode.TOO_LARGE
        voxels = count * size * size
        assert refusal.message.startswith(f"{count}x{size}x{size} = {voxels} voxels exceeds")


def test_1000_small_slices_load() -> None:
    plane = np.zeros((32, 32), np.int16)
    volume = load_volume(_synthetic(1000, 32, plane.tobytes(), thickness=0.5))
    assert volume.hu.shape == (1000, 32, 32)
    assert volume.spacing[0] == pytest.approx(0.5)
