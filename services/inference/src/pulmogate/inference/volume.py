"""Build a checked HU volume from the slices of one axial CT series, or refuse it with a reason."""

from __future__ import annotations

import contextlib
import ctypes
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from pulmogate.common.refusals import Refusal, RefusalCode

CT_IMAGE_STORAGE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage (refused below: multi-frame)
}
GAP_TOLERANCE = 1.5  # a step larger than this times the median spacing is a gap
AXIAL_TOLERANCE = 0.01  # direction cosines within this of the patient axes count as axial
GEOMETRY_TOLERANCE_MM = 0.01
PIXEL_KEYWORDS = {"PixelData", "FloatPixelData", "DoubleFloatPixelData"}


@dataclass
class Volume:
    """A CT series as a (z, y, x) int16 HU array with its geometry and headers."""

    hu: np.ndarray
    spacing: tuple[float, float, float]
    positions: np.ndarray
    orientation: tuple[float, ...]
    headers: list[pydicom.Dataset]

    @property
    def series_uid(self) -> str:
        """SeriesInstanceUID of the input series."""
        return str(self.headers[0].SeriesInstanceUID)

    @property
    def study_uid(self) -> str:
        """StudyInstanceUID of the input study."""
        return str(self.headers[0].StudyInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str:
        """FrameOfReferenceUID of the input series."""
        return str(self.headers[0].get("FrameOfReferenceUID", ""))


def _read(source: Path | pydicom.Dataset) -> pydicom.Dataset:
    """Read one slice (or accept a dataset already read)."""
    if isinstance(source, pydicom.Dataset):
        return source
    try:
        ds = pydicom.dcmread(source, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as error:
        raise Refusal(
            RefusalCode.UNREADABLE, f"cannot read {Path(source).name}: {error}"
        ) from error
    if not any(k in ds for k in ("SOPClassUID", "Modality", "PixelData", "Rows")):
        raise Refusal(RefusalCode.UNREADABLE, f"{Path(source).name} is not a DICOM image")
    return ds


def _floats(ds: pydicom.Dataset, keyword: str, count: int, name: str) -> list[float]:
    """The numeric values of a required multi-valued geometry attribute, or a refusal."""
    value = ds.get(keyword)
    if value is None:
        raise Refusal(
            RefusalCode.INCONSISTENT_GEOMETRY, f"slice {_label(ds)} has no {keyword} ({name})"
        )
    values = [float(v) for v in (value if isinstance(value, Sequence) else [value])]
    if len(values) != count:
        raise Refusal(
            RefusalCode.INCONSISTENT_GEOMETRY,
            f"slice {_label(ds)} has {len(values)} values in {keyword}, expected {count}",
        )
    if not all(math.isfinite(v) for v in values):
        raise Refusal(
            RefusalCode.INCONSISTENT_GEOMETRY,
            f"slice {_label(ds)} has a value that is not a finite number in {keyword}",
        )
    return values


def _label(ds: pydicom.Dataset) -> str:
    """A short, patient-free name for a slice in messages: instance number, else file name."""
    number = ds.get("InstanceNumber")
    if number not in (None, ""):
        return str(number)
    filename = getattr(ds, "filename", None)
    return Path(filename).name if isinstance(filename, str) and filename else "?"


def _check_ct(datasets: Sequence[pydicom.Dataset]) -> None:
    """Refuse anything that is not single-frame CT with pixel data."""
    for ds in datasets:
        modality = ds.get("Modality")
        sop_class = str(ds.get("SOPClassUID", ""))
        if modality is not None and modality != "CT":
            raise Refusal(RefusalCode.NOT_CT, f"modality is {modality}, not CT")
        if modality is None and sop_class and sop_class not in CT_IMAGE_STORAGE_CLASSES:
            raise Refusal(RefusalCode.NOT_CT, f"SOP class {sop_class} is not CT Image Storage")
        if "PixelData" not in ds:
            raise Refusal(RefusalCode.MISSING_PIXEL_DATA, f"slice {_label(ds)} has no pixel data")
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise Refusal(
                RefusalCode.INCONSISTENT_GEOMETRY,
                f"multi-frame CT ({ds.NumberOfFrames} frames) is not supported; "
                "send the series as single-frame CT Image Storage",
            )


def _check_orientation(datasets: Sequence[pydicom.Dataset]) -> tuple[np.ndarray, np.ndarray]:
    """Return (row, column) direction cosines after refusing non-axial, tilted or mixed series."""
    iop = np.array(_floats(datasets[0], "ImageOrientationPatient", 6, "orientation"))
    for ds in datasets[1:]:
        other = np.array(_floats(ds, "ImageOrientationPatient", 6, "orientation"))
        if not np.allclose(other, iop, atol=1e-4):
            raise Refusal(
                RefusalCode.INCONSISTENT_GEOMETRY,
                "slices have different ImageOrientationPatient values",
            )
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    if abs(abs(normal[2]) - 1.0) > AXIAL_TOLERANCE:
        angle = float(np.degrees(np.arccos(min(abs(normal[2]), 1.0))))
        raise Refusal(
            RefusalCode.NOT_AXIAL,
            f"slice normal is {angle:.1f} degrees from the patient's head-feet axis; "
            "only axial series are analysed",
        )
    # Axial slices, but the in-plane axes must also be the patient's (no in-plane rotation).
    if abs(abs(row[0]) - 1.0) > AXIAL_TOLERANCE or abs(abs(col[1]) - 1.0) > AXIAL_TOLERANCE:
        raise Refusal(
            RefusalCode.NOT_AXIAL,
            "rows and columns are not aligned with the patient's left-right and "
            "front-back axes (rotated axial image)",
        )
    return row, col


def _check_tilt(positions: np.ndarray, row: np.ndarray, col: np.ndarray) -> None:
    """Refuse a stack whose slices shift in-plane along z (gantry tilt: a sheared volume)."""
    if len(positions) < 2:
        return
    step = positions[-1] - positions[0]
    length = float(np.linalg.norm(step))
    if length == 0:
        return
    normal = np.cross(row, col)
    cosine = abs(float(np.dot(step / length, normal)))
    angle = float(np.degrees(np.arccos(min(cosine, 1.0))))
    if angle > 0.5:
        raise Refusal(
            RefusalCode.GANTRY_TILT,
            f"slice positions are sheared by {angle:.1f} degrees (gantry tilt); "
            "tilted acquisitions are not analysed",
        )


def _pixels(ds: pydicom.Dataset) -> np.ndarray:
    """Decode one slice to HU (float32), applying RescaleSlope/Intercept."""
    try:
        array = ds.pixel_array
    except Exception as error:  # any decoder failure is a broken or unsupported file
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise Refusal(
            RefusalCode.UNREADABLE,
            f"cannot decode the pixel data of slice {_label(ds)} "
            f"(transfer syntax {syntax}): {error}",
        ) from error
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        raise Refusal(
            RefusalCode.UNREADABLE,
            f"slice {_label(ds)} has a rescale slope or intercept that is not a finite number",
        )
    return array.astype(np.float32) * slope + intercept


def return_freed_memory() -> None:
    """Hand heap pages that are free back to the system (glibc's malloc_trim).

    Buffers under 32 MB (pixel data of each slice read, slabs of the segmentation) come
    from the heap; once freed between blocks that stay, they would otherwise keep the
    worker's resident size up by hundreds of MB (measured: 0.6 GB after a 1000-slice load,
    0.4 GB after its analysis)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(None).malloc_trim(0)


def _header(ds: pydicom.Dataset) -> pydicom.Dataset:
    """A new dataset with every element of ``ds`` except the pixel data (``ds`` is untouched)."""
    header = pydicom.Dataset()
    for element in ds:
        if element.keyword not in PIXEL_KEYWORDS:
            header.add(element)
    if hasattr(ds, "file_meta"):
        header.file_meta = ds.file_meta
    return header


def load_volume(
    sources: Sequence[Path | pydicom.Dataset],
    *,
    max_slice_thickness_mm: float = 2.5,
    min_slices: int = 16,
    max_voxels: int = 320 * 2**20,
) -> Volume:
    """Read, check, sort and decode one axial CT series into a Volume; raise Refusal if unfit.

    Slices are sorted by position along the slice normal (ascending: inferior to
    superior for a head-first supine LPS series). Gantry-tilted and non-axial series
    are refused rather than resampled: resampling would give the overlay and SEG a voxel
    grid that is not the source's, so viewers could not link them slice by slice.
    ``max_voxels`` (default 1280 slices of 512 x 512, 640 MiB of int16) is checked from
    the headers, before any pixel data is decoded. A header value that pydicom cannot
    convert (a corrupt DS/IS/UI) is refused as UNREADABLE, not raised as a crash.
    """
    try:
        volume = _build_volume(
            sources,
            max_slice_thickness_mm=max_slice_thickness_mm,
            min_slices=min_slices,
            max_voxels=max_voxels,
        )
        return_freed_memory()
        return volume
    except Refusal:
        raise
    except UnicodeError as error:  # text values may be patient data: no value in the reason
        raise Refusal(
            RefusalCode.UNREADABLE, f"a text value cannot be decoded ({type(error).__name__})"
        ) from error
    except (
        ValueError,
        TypeError,
        OverflowError,
        AttributeError,
        KeyError,
        IndexError,
        NotImplementedError,
        struct.error,
    ) as error:
        raise Refusal(
            RefusalCode.UNREADABLE, f"a header value cannot be read: {str(error)[:120]}"
        ) from error


def _build_volume(
    sources: Sequence[Path | pydicom.Dataset],
    *,
    max_slice_thickness_mm: float,
    min_slices: int,
    max_voxels: int,
) -> Volume:
    """``load_volume`` without the translation of decoding errors into refusals."""
    if not sources:
        raise Refusal(RefusalCode.TOO_FEW_SLICES, "the series has no slices")
    datasets = [_read(source) for source in sources]
    owned = {id(ds) for ds, source in zip(datasets, sources, strict=True) if ds is not source}
    _check_ct(datasets)
    row, col = _check_orientation(datasets)
    normal = np.cross(row, col)

    first = datasets[0]
    rows, cols = int(first.get("Rows", 0)), int(first.get("Columns", 0))
    pixel_spacing = _floats(first, "PixelSpacing", 2, "pixel spacing")
    for ds in datasets:
        if (int(ds.get("Rows", 0)), int(ds.get("Columns", 0))) != (rows, cols):
            raise Refusal(
                RefusalCode.INCONSISTENT_GEOMETRY,
                f"slice {_label(ds)} is {ds.get('Rows')}x{ds.get('Columns')} pixels, "
                f"slice {_label(first)} is {rows}x{cols}",
            )
        spacing = _floats(ds, "PixelSpacing", 2, "pixel spacing")
        if not np.allclose(spacing, pixel_spacing, atol=1e-4):
            raise Refusal(
                RefusalCode.INCONSISTENT_GEOMETRY,
                f"slice {_label(ds)} has pixel spacing {spacing[0]:g}x{spacing[1]:g} mm, "
                f"slice {_label(first)} has {pixel_spacing[0]:g}x{pixel_spacing[1]:g} mm",
            )

    positions = np.array(
        [_floats(ds, "ImagePositionPatient", 3, "slice position") for ds in datasets]
    )
    distances = positions @ normal
    order = np.argsort(distances, kind="stable")
    datasets = [datasets[i] for i in order]
    positions = positions[order]
    distances = distances[order]

    steps = np.diff(distances)
    if steps.size and float(steps.min()) < GEOMETRY_TOLERANCE_MM:
        i = int(np.argmin(steps))
        raise Refusal(
            RefusalCode.DUPLICATE_POSITIONS,
            f"slices {_label(datasets[i])} and {_label(datasets[i + 1])} share the position "
            f"{distances[i]:.2f} mm along the slice normal",
        )
    _check_tilt(positions, row, col)
    median_step = float(np.median(steps)) if steps.size else 0.0
    if steps.size and float(steps.max()) > GAP_TOLERANCE * median_step:
        i = int(np.argmax(steps))
        raise Refusal(
            RefusalCode.SLICE_GAP,
            f"{steps[i]:.2f} mm between slices at {distances[i]:.2f} and "
            f"{distances[i + 1]:.2f} mm, more than {GAP_TOLERANCE:g}x the median "
            f"spacing of {median_step:.2f} mm (missing slices?)",
        )

    thickness_value = first.get("SliceThickness")
    thickness = float(thickness_value) if thickness_value not in (None, "") else median_step
    if thickness > max_slice_thickness_mm + 1e-6:
        source = "slice thickness" if thickness_value not in (None, "") else "slice spacing"
        raise Refusal(
            RefusalCode.SLICE_TOO_THICK,
            f"{source} {thickness:.1f} mm exceeds the {max_slice_thickness_mm:g} mm limit",
        )
    if not steps.size:  # one slice: its thickness is the only z extent there is
        if thickness_value in (None, ""):
            raise Refusal(
                RefusalCode.INCONSISTENT_GEOMETRY,
                "a single slice without SliceThickness has no z extent",
            )
        median_step = thickness
    if median_step > max_slice_thickness_mm + 1e-6:
        raise Refusal(
            RefusalCode.SLICE_TOO_THICK,
            f"slice spacing {median_step:.1f} mm exceeds the {max_slice_thickness_mm:g} mm limit",
        )
    if len(datasets) < min_slices:
        raise Refusal(
            RefusalCode.TOO_FEW_SLICES,
            f"{len(datasets)} slices, at least {min_slices} are needed to cover the chest",
        )
    voxels = len(datasets) * rows * cols
    if voxels > max_voxels:
        raise Refusal(
            RefusalCode.TOO_LARGE,
            f"{len(datasets)}x{rows}x{cols} = {voxels} voxels exceeds the limit of "
            f"{max_voxels} voxels",
        )

    hu = np.empty((len(datasets), rows, cols), np.int16)
    headers = []
    for k, ds in enumerate(datasets):
        plane = _pixels(ds)
        if plane.shape != (rows, cols):
            raise Refusal(
                RefusalCode.INCONSISTENT_GEOMETRY,
                f"slice {_label(ds)} decodes to {plane.shape}, expected {(rows, cols)}",
            )
        np.clip(plane, -32768, 32767, out=plane)
        hu[k] = np.rint(plane)
        headers.append(_header(ds))
        if id(ds) in owned:  # read here: drop its pixel data and decoded copy now
            del ds.PixelData
    return Volume(
        hu=hu,
        spacing=(median_step, pixel_spacing[0], pixel_spacing[1]),
        positions=positions.astype(np.float64),
        orientation=tuple(float(v) for v in np.concatenate([row, col])),
        headers=headers,
    )
