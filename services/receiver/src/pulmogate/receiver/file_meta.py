"""The file meta the receiver writes before a received dataset, with the association's peer
in it, so that a file alone says everything its rows need (the header itself is read and
indexed by ``pulmogate.common.dicom.intake``)."""

import json
import struct

from pydicom.dataset import FileMetaDataset
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from pulmogate.common.dicom.intake.rows import Peer

PREAMBLE = b"\x00" * 128 + b"DICM"
# PS3.10 7.1: a file's private information, named by its creator's UID. Files the receiver
# wrote carry the association's peer in it (recovery reads it back after a crash).
RECEIVER_CREATOR_UID = "1.2.826.0.1.3680043.10.1354.2.1"


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
