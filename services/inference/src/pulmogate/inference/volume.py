"""Build a checked HU volume from the slices of one axial CT series, or refuse it with a reason."""

from __future__ import annotations

import contextlib
import ctypes
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import CTImageStorage
from pydicom.valuerep import DSfloat

from pulmogate.common.dicom.quiet import keep_values_out_of_logs
from pulmogate.common.refusals import (
    Refusal,
    RefusalCode,
    no_slices,
    not_ct,
    not_ct_storage,
    slice_too_thick,
    too_few_slices,
)
from pulmogate.common.uids import derive_uid, is_valid_uid
from pulmogate.inference import header as attr
from pulmogate.inference.header import checked, label, meta_text
from pulmogate.inference.pixels import hu_plane

CT_IMAGE_STORAGE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage (refused below: multi-frame)
}
GAP_TOLERANCE = 1.5  # a step larger than this times the median spacing is a gap
AXIAL_TOLERANCE = 0.01  # direction cosines within this of the patient axes count as axial
GEOMETRY_TOLERANCE_MM = 0.01
# What the engine and the outputs read from a slice header; nothing else is kept, and
# nothing else is decoded (a vendor's private element that breaks its VR stays unread).
KEEP_KEYWORDS = (
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "Modality",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "SliceLocation",
    "Rows",
    "Columns",
    "BodyPartExamined",
    "LossyImageCompression",
    "LossyImageCompressionRatio",
    "LossyImageCompressionMethod",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
    "IssuerOfPatientID",
    "PatientAge",
)


@dataclass
class Volume:
    """A CT series as a (z, y, x) int16 HU array with its geometry and headers.

    ``headers`` hold only the attributes of ``KEEP_KEYWORDS``, with the type 1 values the
    outputs need present (derived where the input lacks them); ``notes`` say, without any
    value, what was derived, for the job log.
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    positions: np.ndarray
    orientation: tuple[float, ...]
    headers: list[pydicom.Dataset]
    notes: list[str] = field(default_factory=list)

    @property
    def series_uid(self) -> str:
        """SeriesInstanceUID of the input series."""
        return str(self.headers[0].SeriesInstanceUID)

    @property
    def study_uid(self) -> str:
        """StudyInstanceUID of the input study."""
        return str(self.headers[0].StudyInstanceUID)


def _read(source: Path | pydicom.Dataset) -> pydicom.Dataset:
    """Read one slice (or accept a dataset already read); no element is decoded here."""
    if isinstance(source, pydicom.Dataset):
        return source
    try:
        ds = pydicom.dcmread(source, force=True)
    except Exception as error:  # any reader failure: a broken file, not a crash
        raise Refusal(
            RefusalCode.UNREADABLE,
            f"{Path(source).name} cannot be read as a DICOM file (cut short or not DICOM)",
        ) from error
    if not any(k in ds for k in ("SOPClassUID", "Modality", "PixelData", "Rows")):
        raise Refusal(RefusalCode.UNREADABLE, f"{Path(source).name} is not a DICOM image")
    return ds


def _floats(ds: pydicom.Dataset, keyword: str, count: int, name: str) -> list[float]:
    """The numeric values of a required multi-valued geometry attribute, or a refusal."""
    try:
        found = attr.numbers(ds, keyword, count)
    except attr.BadValue as error:
        raise Refusal(
            RefusalCode.INCONSISTENT_GEOMETRY,
            f"slice {label(ds)}: {error.keyword} {error.problem}",
        ) from error
    if found is None:
        raise Refusal(
            RefusalCode.INCONSISTENT_GEOMETRY, f"slice {label(ds)} has no {keyword} ({name})"
        )
    return found


def _sop_class(ds: pydicom.Dataset) -> str | None:
    """SOPClassUID, else the file meta's MediaStorageSOPClassUID."""
    return checked(attr.text, ds, "SOPClassUID") or meta_text(ds, "MediaStorageSOPClassUID")


def _check_ct(datasets: Sequence[pydicom.Dataset]) -> None:
    """Refuse anything that is not single-frame CT with pixel data."""
    for ds in datasets:
        modality = checked(attr.text, ds, "Modality")
        sop_class = _sop_class(ds) or ""
        if modality is not None and modality != "CT":
            raise not_ct(modality)
        if modality is None and sop_class and sop_class not in CT_IMAGE_STORAGE_CLASSES:
            raise not_ct_storage(sop_class)
        if "PixelData" not in ds:
            raise Refusal(RefusalCode.MISSING_PIXEL_DATA, f"slice {label(ds)} has no pixel data")
        frames = checked(attr.integer, ds, "NumberOfFrames") or 1
        if frames > 1:
            raise Refusal(
                RefusalCode.INCONSISTENT_GEOMETRY,
                f"multi-frame CT ({frames} frames) is not supported; "
                "send the series as single-frame CT Image Storage",
            )


def _uid(ds: pydicom.Dataset, keyword: str, meta_keyword: str | None = None) -> str:
    """A required UID of the slice (or of its file meta), or a refusal."""
    uid = checked(attr.text, ds, keyword) or (meta_text(ds, meta_keyword) if meta_keyword else None)
    if uid is None:
        raise Refusal(
            RefusalCode.UNREADABLE_HEADER,
            f"slice {label(ds)} has no {keyword}; the results could not be linked to it",
        )
    if not is_valid_uid(uid):
        raise Refusal(
            RefusalCode.UNREADABLE_HEADER, f"slice {label(ds)}: {keyword} is not a valid UID"
        )
    return uid


@dataclass(frozen=True)
class Identity:
    """The UIDs every output needs, read once per slice, and what had to be derived."""

    sop_instance_uids: list[str]
    frame_of_reference_uid: str
    notes: list[str]


def _check_identity(datasets: Sequence[pydicom.Dataset]) -> Identity:
    """One study and one series; every slice with its SOP Instance UID; one frame of reference
    (derived from the series when the input has none)."""
    notes: list[str] = []
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        found = {_uid(ds, keyword) for ds in datasets}
        if len(found) > 1:
            raise Refusal(
                RefusalCode.MIXED_SERIES,
                f"the slices carry {len(found)} different {keyword} values; "
                "one series is analysed at a time",
            )
    sop_uids = [_uid(ds, "SOPInstanceUID", "MediaStorageSOPInstanceUID") for ds in datasets]
    frames: set[str] = set()
    for ds in datasets:
        with contextlib.suppress(attr.BadValue):
            frame = attr.text(ds, "FrameOfReferenceUID")
            if frame is not None and is_valid_uid(frame):
                frames.add(frame)
    if len(frames) > 1:
        raise Refusal(
            RefusalCode.INCONSISTENT_GEOMETRY,
            f"the slices carry {len(frames)} different FrameOfReferenceUID values",
        )
    if frames:
        frame_uid = frames.pop()
    else:
        series_uid = _uid(datasets[0], "SeriesInstanceUID")
        frame_uid = derive_uid("pulmogate-frame-of-reference", series_uid)
        notes.append(
            "FrameOfReferenceUID is missing in the input: the outputs carry one derived "
            "from the series"
        )
    if any(checked(attr.text, ds, "SOPInstanceUID") is None for ds in datasets):
        notes.append("SOPInstanceUID taken from the file meta information of some slices")
    return Identity(sop_uids, frame_uid, notes)


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


def return_freed_memory() -> None:
    """Hand heap pages that are free back to the system (glibc's malloc_trim).

    Buffers under 32 MB (pixel data of each slice read, slabs of the segmentation) come
    from the heap; once freed between blocks that stay, they would otherwise keep the
    worker's resident size up by hundreds of MB (measured: 0.6 GB after a 1000-slice load,
    0.4 GB after its analysis)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(None).malloc_trim(0)


def _ds(value: float) -> DSfloat:
    """A number as a valid DS (at most 16 characters)."""
    return DSfloat(value, auto_format=True)


@dataclass(frozen=True)
class Derived:
    """Values of the header that are read or derived once for the whole series."""

    sop_class_uid: str
    frame_of_reference_uid: str
    orientation: list[float]
    pixel_spacing: list[float]
    slice_thickness: float


def _header(
    ds: pydicom.Dataset, sop_uid: str, position: np.ndarray, derived: Derived
) -> pydicom.Dataset:
    """The attributes of ``KEEP_KEYWORDS`` (undecoded), with the type 1 values the outputs
    need set: read and checked, or derived. ``ds`` is untouched."""
    header = attr.copy_elements(ds, KEEP_KEYWORDS)
    header.SOPClassUID = _sop_class(ds) or derived.sop_class_uid
    header.SOPInstanceUID = sop_uid
    header.Modality = "CT"
    header.FrameOfReferenceUID = derived.frame_of_reference_uid
    header.ImagePositionPatient = [_ds(float(v)) for v in position]
    header.ImageOrientationPatient = [_ds(v) for v in derived.orientation]
    header.PixelSpacing = [_ds(v) for v in derived.pixel_spacing]
    header.SliceThickness = _ds(derived.slice_thickness)
    try:
        location = attr.number(ds, "SliceLocation")
    except attr.BadValue:
        location = None
    if location is None:
        header.pop("SliceLocation", None)
    else:
        header.SliceLocation = _ds(location)
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
    superior for a head-first supine LPS series), whatever order the files or their
    InstanceNumbers come in; SpacingBetweenSlices is not read (its sign differs between
    vendors): the spacing comes from the positions. Gantry-tilted and non-axial series
    are refused rather than resampled: resampling would give the overlay and SEG a voxel
    grid that is not the source's, so viewers could not link them slice by slice.
    ``max_voxels`` (default 1280 slices of 512 x 512, 640 MiB of int16) is checked from
    the headers, before any pixel data is decoded. Only the attributes used are decoded;
    one that cannot be read refuses the series (UNREADABLE_HEADER) naming the attribute,
    never quoting its value.
    """
    keep_values_out_of_logs()
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
    except (
        ValueError,
        TypeError,
        OverflowError,
        AttributeError,
        KeyError,
        IndexError,
        NotImplementedError,
        UnicodeError,
        struct.error,
    ) as error:  # the message may quote a value: the cause goes to the service log only
        raise Refusal(
            RefusalCode.UNREADABLE_HEADER,
            "a slice header holds a value that cannot be read; the inference service log "
            "names the error",
        ) from error


def _build_volume(
    sources: Sequence[Path | pydicom.Dataset],
    *,
    max_slice_thickness_mm: float,
    min_slices: int,
    max_voxels: int,
) -> Volume:
    """``load_volume`` without the translation of unexpected errors into refusals."""
    if not sources:
        raise no_slices()
    datasets = [_read(source) for source in sources]
    owned = {id(ds) for ds, source in zip(datasets, sources, strict=True) if ds is not source}
    _check_ct(datasets)
    row, col = _check_orientation(datasets)
    normal = np.cross(row, col)

    first = datasets[0]
    rows, cols = checked(attr.integer, first, "Rows"), checked(attr.integer, first, "Columns")
    if not rows or not cols or rows < 0 or cols < 0:
        raise Refusal(
            RefusalCode.UNREADABLE_HEADER,
            f"slice {label(first)} has no Rows or Columns; the image size is unknown",
        )
    pixel_spacing = _floats(first, "PixelSpacing", 2, "pixel spacing")
    for ds in datasets:
        size = (checked(attr.integer, ds, "Rows"), checked(attr.integer, ds, "Columns"))
        if size != (rows, cols):
            raise Refusal(
                RefusalCode.INCONSISTENT_GEOMETRY,
                f"slice {label(ds)} is {size[0]}x{size[1]} pixels, "
                f"slice {label(first)} is {rows}x{cols}",
            )
        spacing = _floats(ds, "PixelSpacing", 2, "pixel spacing")
        if not np.allclose(spacing, pixel_spacing, atol=1e-4):
            raise Refusal(
                RefusalCode.INCONSISTENT_GEOMETRY,
                f"slice {label(ds)} has pixel spacing {spacing[0]:g}x{spacing[1]:g} mm, "
                f"slice {label(first)} has {pixel_spacing[0]:g}x{pixel_spacing[1]:g} mm",
            )
    if min(pixel_spacing) <= 0:
        raise Refusal(
            RefusalCode.INCONSISTENT_GEOMETRY,
            f"slice {label(first)} has a pixel spacing that is not positive",
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
            f"slices {label(datasets[i])} and {label(datasets[i + 1])} share the position "
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

    try:
        declared = attr.number(first, "SliceThickness")
    except attr.BadValue:
        declared = None  # type 2: a bad value is as good as none, the spacing stands in
    if declared is not None and declared <= 0:
        declared = None
    thickness = declared if declared is not None else median_step
    if thickness > max_slice_thickness_mm + 1e-6:
        source = "slice thickness" if declared is not None else "slice spacing"
        raise slice_too_thick(thickness, max_slice_thickness_mm, measure=source)
    if not steps.size:  # one slice: its thickness is the only z extent there is
        if declared is None:
            raise Refusal(
                RefusalCode.INCONSISTENT_GEOMETRY,
                "a single slice without SliceThickness has no z extent",
            )
        median_step = thickness
    if median_step > max_slice_thickness_mm + 1e-6:
        raise slice_too_thick(median_step, max_slice_thickness_mm, measure="slice spacing")
    if len(datasets) < min_slices:
        raise too_few_slices(len(datasets), min_slices)
    voxels = len(datasets) * rows * cols
    if voxels > max_voxels:
        raise Refusal(
            RefusalCode.TOO_LARGE,
            f"{len(datasets)}x{rows}x{cols} = {voxels} voxels exceeds the limit of "
            f"{max_voxels} voxels",
        )

    identity = _check_identity(datasets)  # after the cheap refusals: they say more
    notes = list(identity.notes)
    if declared is None:
        notes.append(
            f"SliceThickness is missing or not usable in the input: the outputs carry the "
            f"slice spacing, {median_step:.2f} mm"
        )
    derived = Derived(
        sop_class_uid=CTImageStorage,
        frame_of_reference_uid=identity.frame_of_reference_uid,
        orientation=[float(v) for v in np.concatenate([row, col])],
        pixel_spacing=pixel_spacing,
        slice_thickness=thickness,
    )
    hu = np.empty((len(datasets), rows, cols), np.int16)
    headers = []
    for k, ds in enumerate(datasets):
        plane = hu_plane(ds)
        if plane.shape != (rows, cols):
            raise Refusal(
                RefusalCode.UNSUPPORTED_PIXEL_DATA,
                f"slice {label(ds)} decodes to {plane.shape[0]}x{plane.shape[1]} pixels, "
                f"its header says {rows}x{cols}",
            )
        np.clip(plane, -32768, 32767, out=plane)
        hu[k] = np.rint(plane)
        headers.append(_header(ds, identity.sop_instance_uids[k], positions[k], derived))
        if id(ds) in owned:  # read here: drop its pixel data and decoded copy now
            del ds.PixelData
    return Volume(
        hu=hu,
        spacing=(median_step, pixel_spacing[0], pixel_spacing[1]),
        positions=positions.astype(np.float64),
        orientation=tuple(derived.orientation),
        headers=headers,
        notes=notes,
    )
