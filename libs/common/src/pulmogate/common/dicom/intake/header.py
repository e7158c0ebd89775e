"""Reading and checking an instance header: decodable, the required UIDs valid, a CT class."""

from io import BytesIO
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from pulmogate.common.dicom.syntaxes import ACCEPTED_STORAGE_CLASSES
from pulmogate.common.uids import is_valid_uid

REQUIRED_UIDS = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
CT_CLASSES = frozenset(str(uid) for uid in ACCEPTED_STORAGE_CLASSES)


class CannotUnderstand(ValueError):
    """An instance PulmoGate cannot decode or file; the message is the reason."""


def uid_text(ds: Dataset, keyword: str) -> str:
    """A UID as received (validated by ``read_header``, never repaired)."""
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def read_header(source: bytes | Path) -> Dataset:
    """Decode everything of a Part 10 file (its bytes, or its path) before the pixel data and
    check its required UIDs; raise ``CannotUnderstand`` with the reason otherwise."""
    try:
        encoded = BytesIO(source) if isinstance(source, bytes) else source
        ds = dcmread(encoded, stop_before_pixels=True)
        for keyword in REQUIRED_UIDS:
            uid = uid_text(ds, keyword)
            if not uid:
                raise CannotUnderstand(f"missing {keyword}")
            if not is_valid_uid(uid):
                raise CannotUnderstand(f"{keyword} is not a valid UID")
    except CannotUnderstand:
        raise
    except InvalidDicomError as exc:
        raise CannotUnderstand(f"not a DICOM file ({type(exc).__name__})") from exc
    except Exception as exc:
        raise CannotUnderstand(f"undecodable dataset: {type(exc).__name__}") from exc
    return ds


def file_meta_text(ds: Dataset, keyword: str) -> str:
    """A value of the file meta ("" without one)."""
    meta = getattr(ds, "file_meta", None)
    value = meta.get(keyword, "") if meta is not None else ""
    return "" if value is None else str(value).strip()


def stored_classes(ds: Dataset) -> tuple[str, str]:
    """SOP class and transfer syntax of a Part 10 file, checked: a CT storage class (from
    the file meta, else the dataset) and a transfer syntax in the file meta."""
    sop_class = file_meta_text(ds, "MediaStorageSOPClassUID") or uid_text(ds, "SOPClassUID")
    if sop_class not in CT_CLASSES:
        raise CannotUnderstand(f"SOP class {sop_class or '(none)'} is not a CT image")
    syntax = file_meta_text(ds, "TransferSyntaxUID")
    if not syntax:
        raise CannotUnderstand("no transfer syntax in the file meta (not Part 10)")
    return sop_class, syntax
