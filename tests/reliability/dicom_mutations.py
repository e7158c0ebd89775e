"""Hypothesis strategies for hostile DICOM: raw byte mutations of an encoded dataset,
absurd header values, and UIDs with path-like characters."""

import struct
from io import BytesIO
from typing import Any

import numpy as np
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

PATH_LIKE_UIDS = [
    "../../../etc/passwd",
    "..",
    ".",
    "1.2/../../3",
    "1.2\\..\\3",
    "/tmp/x",
    "1.2.3\x00.4",
    "C:\\windows",
    "1." + "9" * 200,
    "",
    " ",
    "1.2.3.",
    "01.2.3",
    "1..2",
    "%2e%2e%2f",
    "1.2.3;rm -rf",
    "𝔘𝔌𝔇",
]


def ct_dataset(
    index: int = 0,
    *,
    size: int = 16,
    study: str | None = None,
    series: str | None = None,
    sop: str | None = None,
) -> Dataset:
    """A small valid CT slice with file meta."""
    sop = sop or str(generate_uid())
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "PHANTOM^FUZZ"
    ds.PatientID = "PG-FUZZ-1"
    ds.Modality = "CT"
    ds.InstanceNumber = index + 1
    ds.SliceThickness = "1.25"
    ds.PixelSpacing = ["0.7", "0.7"]
    ds.ImagePositionPatient = [0, 0, index * 1.25]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = np.full((size, size), 1000 + index, dtype=np.uint16).tobytes()
    return ds


def encode(ds: Dataset) -> tuple[bytes, bytes]:
    """(preamble + file meta, dataset body) as written to a Part 10 file."""
    head = BytesIO()
    head.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(head, ds.file_meta, enforce_standard=True)  # type: ignore[arg-type]
    body = BytesIO()
    plain = Dataset()
    plain.update({e.tag: e for e in ds})
    plain.save_as(body, implicit_vr=False, little_endian=True)
    return head.getvalue(), body.getvalue()


def pixel_data_length_offset(body: bytes) -> int:
    """Offset of the 4-byte length of (7FE0,0010) OB/OW in an explicit VR LE body."""
    for vr in (b"OW", b"OB"):
        at = body.rfind(b"\xe0\x7f\x10\x00" + vr)
        if at >= 0:
            return at + 8
    raise ValueError("no pixel data element")


@st.composite
def mutated_bodies(draw: Any, body: bytes) -> bytes:
    """Flip, truncate, insert, or give the pixel data an absurd length."""
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "pixel_length", "header_flip"]))
    data = bytearray(body)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] = draw(st.integers(0, 255))
    elif kind == "header_flip":  # hit the tags, VRs and lengths, not just pixels
        limit = pixel_data_length_offset(body)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, limit - 1))
            data[at] = draw(st.integers(0, 255))
    elif kind == "truncate":
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif kind == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    else:
        at = pixel_data_length_offset(body)
        length = draw(st.sampled_from([0, 1, 3, 0xFFFFFFFF, 0xFFFFFFF0, 2**31, 2**20]))
        data[at : at + 4] = struct.pack("<I", length)
    return bytes(data)


@st.composite
def hostile_headers(draw: Any) -> Dataset:
    """A slice with absurd dimensions, pixel lengths, numbers, or path-like UIDs."""
    ds = ct_dataset(draw(st.integers(0, 50)))
    for _ in range(draw(st.integers(1, 3))):
        field = draw(
            st.sampled_from(
                ["dims", "pixels", "bits", "uid", "numbers", "drop", "orientation", "text"]
            )
        )
        if field == "dims":
            ds.Rows = draw(st.sampled_from([0, 1, 65535, 4096, 32768]))
            ds.Columns = draw(st.sampled_from([0, 1, 65535, 4096, 32768]))
        elif field == "pixels":
            ds.PixelData = draw(st.binary(max_size=64)) * draw(st.sampled_from([1, 2, 1000]))
        elif field == "bits":
            ds.BitsAllocated = draw(st.sampled_from([0, 1, 8, 12, 32, 64, 255]))
            ds.BitsStored = draw(st.sampled_from([0, 8, 16, 40]))
            ds.SamplesPerPixel = draw(st.sampled_from([0, 1, 3, 200]))
        elif field == "uid":
            keyword = draw(
                st.sampled_from(["SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"])
            )
            setattr(ds, keyword, draw(st.sampled_from(PATH_LIKE_UIDS)))
        elif field == "numbers":
            value = draw(st.sampled_from(["nan", "inf", "-inf", "1e308", "-0", "abc", ""]))
            keyword = draw(st.sampled_from(["SliceThickness", "RescaleSlope", "RescaleIntercept"]))
            try:
                setattr(ds, keyword, value)
                ds.ImagePositionPatient = [value, "0", "0"]
            except ValueError:
                ds[keyword].value = None  # pydicom refuses it; leave the element empty
        elif field == "drop":
            keyword = draw(
                st.sampled_from(
                    ["PixelData", "Rows", "ImagePositionPatient", "PixelSpacing", "Modality"]
                )
            )
            if keyword in ds:
                delattr(ds, keyword)
        elif field == "orientation":
            ds.ImageOrientationPatient = draw(
                st.sampled_from([[0, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0], ["nan"] * 6, [1, 0]])
            )
        else:
            ds.PatientName = draw(st.text(max_size=80))
            ds.SeriesDescription = draw(st.text(max_size=80))
    return ds
