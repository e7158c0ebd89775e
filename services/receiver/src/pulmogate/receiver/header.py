"""What the receiver reads of an instance: its header, the values it indexes, the peer it
keeps in the file meta (so that a file alone says everything its rows need)."""

import json
import struct
from io import BytesIO
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.multival import MultiValue
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from pulmogate.common.dicom.syntaxes import ACCEPTED_STORAGE_CLASSES
from pulmogate.common.uids import is_valid_uid
from pulmogate.receiver.records import Peer, ReceivedInstance

REQUIRED_UIDS = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
PREAMBLE = b"\x00" * 128 + b"DICM"
# PS3.10 7.1: a file's private information, named by its creator's UID. Files the receiver
# wrote carry the association's peer in it (recovery reads it back after a crash).
RECEIVER_CREATOR_UID = "1.2.826.0.1.3680043.10.1354.2.1"


class CannotUnderstand(ValueError):
    """A dataset the receiver cannot decode or file (its reason goes into ErrorComment)."""


def uid_text(ds: Dataset, keyword: str) -> str:
    """A UID as received (validated by the caller, never repaired)."""
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _text(ds: Dataset, keyword: str) -> str:
    """A descriptive value for the database: "" when absent or undecodable, NUL removed
    (PostgreSQL text refuses it; the stored file keeps the value as it came)."""
    try:
        value = ds.get(keyword, "")
    except Exception:  # a value pydicom cannot convert: nothing to index
        return ""
    if value is None:
        return ""
    if isinstance(value, MultiValue):  # as stored: values separated by a backslash
        value = "\\".join(str(v) for v in value)
    return str(value).replace("\x00", "").strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except Exception:  # absent from the index, not a reason to refuse the instance
        return None


def _float(ds: Dataset, keyword: str) -> float | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else float(value)
    except Exception:  # absent from the index, not a reason to refuse the instance
        return None


def _pixel_spacing(ds: Dataset) -> str:
    try:
        return "\\".join(str(v) for v in ds.get("PixelSpacing", []) or [])
    except Exception:  # the loader refuses the series with the reason; here: unknown
        return ""


def _modality(ds: Dataset, sop_class_uid: str) -> str:
    """Modality, or CT for a CT storage class when the header lacks it (type 1, but
    some exports drop it; the loader derives it the same way)."""
    modality = _text(ds, "Modality")
    if not modality and sop_class_uid in ACCEPTED_STORAGE_CLASSES:
        return "CT"
    return modality


def read_header(encoded: bytes) -> Dataset:
    """Decode everything of a Part 10 file before the pixel data; raise ``CannotUnderstand``
    on bad input."""
    try:
        ds = dcmread(BytesIO(encoded), stop_before_pixels=True)
        for keyword in REQUIRED_UIDS:
            uid = uid_text(ds, keyword)
            if not uid:
                raise CannotUnderstand(f"missing {keyword}")
            if not is_valid_uid(uid):
                raise CannotUnderstand(f"{keyword} is not a valid UID")
    except CannotUnderstand:
        raise
    except Exception as exc:
        raise CannotUnderstand(f"undecodable dataset: {type(exc).__name__}") from exc
    return ds


def received_instance(
    ds: Dataset, *, sop_class_uid: str, transfer_syntax_uid: str, path: Path, size_bytes: int
) -> ReceivedInstance:
    """The indexed values of a checked header (``read_header``)."""
    return ReceivedInstance(
        study_uid=uid_text(ds, "StudyInstanceUID"),
        series_uid=uid_text(ds, "SeriesInstanceUID"),
        sop_instance_uid=uid_text(ds, "SOPInstanceUID"),
        sop_class_uid=sop_class_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        path=str(path),
        size_bytes=size_bytes,
        modality=_modality(ds, sop_class_uid),
        study_description=_text(ds, "StudyDescription"),
        series_description=_text(ds, "SeriesDescription"),
        patient_name=_text(ds, "PatientName"),
        patient_id=_text(ds, "PatientID"),
        study_date=_text(ds, "StudyDate"),
        accession_number=_text(ds, "AccessionNumber"),
        study_time=_text(ds, "StudyTime"),
        study_id=_text(ds, "StudyID"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        series_number=_int(ds, "SeriesNumber"),
        instance_number=_int(ds, "InstanceNumber"),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        pixel_spacing=_pixel_spacing(ds),
        slice_thickness=_float(ds, "SliceThickness"),
    )


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    """One group 0002 element, explicit VR little endian (PS3.5 7.1.2)."""
    if vr == b"OB":
        return struct.pack("<HH2s2xL", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" * (len(raw) % 2)


def _text_value(value: str) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + b" " * (len(raw) % 2)


def file_preamble(
    *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, peer: Peer
) -> bytes:
    """Preamble, prefix and file meta of a received instance, with the peer in it.

    Encoded here, not by pydicom: the same elements (pynetdicom's implementation class and
    version, as ``Event.file_meta``) in a twentieth of the time, once per C-STORE.
    """
    info = json.dumps(
        {"calling_ae": peer.calling_ae, "called_ae": peer.called_ae, "peer_ip": peer.peer_ip}
    ).encode()
    body = b"".join(
        (
            _element(0x0001, b"OB", b"\x00\x01"),
            _element(0x0002, b"UI", _uid(sop_class_uid)),
            _element(0x0003, b"UI", _uid(sop_instance_uid)),
            _element(0x0010, b"UI", _uid(transfer_syntax_uid)),
            _element(0x0012, b"UI", _uid(PYNETDICOM_IMPLEMENTATION_UID)),
            _element(0x0013, b"SH", _text_value(PYNETDICOM_IMPLEMENTATION_VERSION)),
            _element(0x0016, b"AE", _text_value(peer.calling_ae[:16])),
            _element(0x0100, b"UI", _uid(RECEIVER_CREATOR_UID)),
            _element(0x0102, b"OB", info + b" " * (len(info) % 2)),
        )
    )
    return PREAMBLE + _element(0x0000, b"UL", struct.pack("<L", len(body))) + body


def peer_of(meta: FileMetaDataset) -> Peer | None:
    """The peer a file written by the receiver came from (None: another writer's file)."""
    if str(meta.get("PrivateInformationCreatorUID", "")).strip() != RECEIVER_CREATOR_UID:
        return None
    try:
        info = json.loads(bytes(meta.PrivateInformation).decode())
        return Peer(
            calling_ae=str(info["calling_ae"]),
            called_ae=str(info["called_ae"]),
            peer_ip=str(info["peer_ip"]),
        )
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
