"""Send a job's output files to one destination over one association, each picture in the
destination's image encoding."""

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread

from pulmogate.common.dicom.encoding import (
    DEFAULT_IMAGE_ENCODING,
    ImageEncoding,
    encoded,
    encoding_of,
    is_picture,
    offered_syntaxes,
    syntax_of,
)
from pulmogate.common.dicom.scu import AssociationFailed, Outgoing, store
from pulmogate.common.storage import Storage, atomic_write, dataset_bytes


@dataclass(frozen=True)
class Peer:
    """Where to send: a destination's address and AE title."""

    name: str
    host: str
    port: int
    ae_title: str
    image_encoding: ImageEncoding = DEFAULT_IMAGE_ENCODING

    def __str__(self) -> str:
        return f"{self.name} ({self.ae_title}@{self.host}:{self.port})"


@dataclass(frozen=True)
class DispatchOutcome:
    """The result of one attempt: how many objects were accepted, and the error if any."""

    sent: int
    total: int
    error: str | None
    syntaxes: dict[str, int] = field(default_factory=dict)  # objects sent per syntax name
    refused: tuple[str, ...] = ()  # preferred syntaxes the destination did not accept
    decoded: int = 0  # pictures decoded here to be sent uncompressed
    transcoded: int = 0  # pictures encoded here (and stored) in the destination's encoding

    @property
    def ok(self) -> bool:
        """True when every object was accepted."""
        return self.error is None


def _network_detail(peer: Peer, timeout_s: float) -> str:
    """Why the TCP connection itself fails, if it does (pynetdicom only says 'aborted')."""
    try:
        with socket.create_connection((peer.host, peer.port), timeout=min(timeout_s, 5.0)):
            return ""
    except OSError as exc:
        return f" ({exc.strerror or type(exc).__name__})"


@dataclass(frozen=True)
class StoredResult:
    """One output object of a job as recorded: where its primary file is."""

    job_id: int
    kind: str
    sop_instance_uid: str
    path: Path


def prepare(
    results: Sequence[StoredResult], encoding: ImageEncoding, storage: Storage
) -> tuple[list[Outgoing], int]:
    """What to send for each result, and how many pictures had to be encoded for it.

    A picture goes in the file stored in ``encoding``; a job analysed before the destination
    wanted that encoding has none yet, so it is encoded from the primary file once and
    stored beside it (a resend finds it). Every other result goes as stored."""
    outgoing: list[Outgoing] = []
    transcoded = 0
    for result in results:
        header = dcmread(result.path, stop_before_pixels=True)
        path = result.path
        if is_picture(header) and encoding_of(syntax_of(header)) is not encoding:
            path = storage.result_path(
                result.job_id, result.kind, result.sop_instance_uid, encoding.value
            )
            if not path.exists():
                atomic_write(path, dataset_bytes(encoded(dcmread(result.path), encoding)))
                transcoded += 1
        syntaxes = tuple(str(s) for s in offered_syntaxes(header, encoding))
        outgoing.append(Outgoing(path, str(header.SOPClassUID), syntaxes))
    return outgoing, transcoded


def _send(
    results: Sequence[StoredResult],
    peer: Peer,
    storage: Storage,
    calling_aet: str,
    timeout_s: float,
) -> DispatchOutcome:
    """Blocking C-STORE of every result (runs in a worker thread)."""
    total = len(results)
    try:
        items, transcoded = prepare(results, peer.image_encoding, storage)
        result = store(
            items,
            peer.host,
            peer.port,
            peer.ae_title,
            calling_aet=calling_aet,
            timeout_s=timeout_s,
        )
    except AssociationFailed as exc:
        return DispatchOutcome(0, total, f"{exc}{_network_detail(peer, timeout_s)}")
    except Exception as exc:
        return DispatchOutcome(0, total, f"{type(exc).__name__}: {exc}")

    def outcome(error: str | None) -> DispatchOutcome:
        return DispatchOutcome(
            result.sent,
            total,
            error,
            dict(result.syntaxes),
            tuple(sorted(result.refused)),
            result.decoded,
            transcoded,
        )

    if result.ok and result.sent == total:
        return outcome(None)
    if result.failed:
        uid, reason = result.failed[0]
        error = (
            f"{peer.ae_title} refused {len(result.failed)} of {total} objects "
            f"({reason}, first {uid})"
        )
    else:
        error = f"association ended after {result.sent} of {total} objects"
    return outcome(error)


async def dispatch(
    results: Sequence[StoredResult],
    peer: Peer,
    *,
    storage: Storage,
    calling_aet: str,
    timeout_s: float,
) -> DispatchOutcome:
    """C-STORE ``results`` to ``peer`` without blocking the event loop."""
    return await asyncio.to_thread(_send, results, peer, storage, calling_aet, timeout_s)
