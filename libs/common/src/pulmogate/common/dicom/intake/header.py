"""Reading and checking an instance header: decodable, the required UIDs valid, a CT class."""

from io import BytesIO
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

from pulmogate.common.dicom.syntaxes import ACCEPTED_STORAGE_CLASSES
from pulmogate.common.uids import is_valid_uid

REQUIRED_UIDS = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
CT_CLASSES = frozenset(str(uid) for uid in ACCEPTED_STORAGE_CLASSES)
PIXEL_DATA = 0x7FE00010


class CannotUnderstand(ValueError):
    """An instance PulmoGate cannot decode or file; the message is the reason."""


def uid_text(ds: Dataset, keyword: str) -> str:
    """A UID as received (validated by ``read_header``, never repaired)."""
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _check_uids(ds: Dataset) -> None:
    for keyword in REQUIRED_UIDS:
        uid = uid_text(ds, keyword)
        if not uid:
            raise CannotUnderstand(f"missing {keyword}")
        if not is_valid_uid(uid):
            raise CannotUnderstand(f"{keyword} is not a valid UID")


def read_header(source: bytes | Path) -> Dataset:
    """Decode everything of a Part 10 file (its bytes, or its path) before the pixel data and
    check its required UIDs; raise ``CannotUnderstand`` with the reason otherwise."""
    try:
        encoded = BytesIO(source) if isinstance(source, bytes) else source
        ds = dcmread(encoded, stop_before_pixels=True)
        _check_uids(ds)
    except CannotUnderstand:
        raise
    except InvalidDicomError as exc:
        raise CannotUnderstand(f"not a DICOM file ({type(exc).__name__})") from exc
    except Exception as exc:
        raise CannotUnderstand(f"undecodable dataset: {type(exc).__name__}") from exc
    return ds


def _before_pixels(tag: BaseTag, _vr: str | None, _length: int) -> bool:
    return tag == PIXEL_DATA


def read_received(file_meta: bytes, dataset: bytes, transfer_syntax_uid: str) -> Dataset:
    """``read_header`` of a C-STORE's dataset as received, without its file meta (encoded by
    the receiver itself: decoding it again cost a third of the time on two cores); a deflated
    dataset is read as a whole file, ``file_meta`` and ``dataset`` together."""
    syntax = UID(transfer_syntax_uid)
    if not syntax.is_transfer_syntax or syntax.is_deflated:
        return read_header(file_meta + dataset)
    try:
        ds = read_dataset(
            BytesIO(dataset),
            syntax.is_implicit_VR,
            syntax.is_little_endian,
            stop_when=_before_pixels,
        )
        _check_uids(ds)
    except CannotUnderstand:
        raise
    except Exception as exc:
        raise CannotUnderstand(f"undecodable dataset: {type(exc).__name__}") from exc
    return ds


def file_meta_text(ds: Dataset, keyword: str) -> str:
    """A value of the file meta ("" without one)."""
    meta = getattr(ds, "file_meta", None)
    value = meta.get(keyword, "") if meta is not None else ""
    return "" if value is None else str(value).strip()


def sop_class_of(ds: Dataset) -> str:
    """The SOP class of a Part 10 file: from its file meta, else from the dataset ("": none)."""
    return file_meta_text(ds, "MediaStorageSOPClassUID") or uid_text(ds, "SOPClassUID")


def stored_classes(ds: Dataset) -> tuple[str, str]:
    """SOP class and transfer syntax of a Part 10 file, checked: a CT storage class (from
    the file meta, else the dataset) and a transfer syntax in the file meta."""
    sop_class = sop_class_of(ds)
    if sop_class not in CT_CLASSES:
        raise CannotUnderstand(f"SOP class {sop_class or '(none)'} is not a CT image")
    syntax = file_meta_text(ds, "TransferSyntaxUID")
    if not syntax:
        raise CannotUnderstand("no transfer syntax in the file meta (not Part 10)")
    return sop_class, syntax
