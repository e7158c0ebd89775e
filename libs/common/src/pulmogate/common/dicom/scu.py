"""C-STORE SCU: send files or datasets to a peer over one association."""

import contextlib
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from pydicom import Dataset, dcmread
from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pulmogate.common.dicom.statuses import STATUS_SUCCESS, STORE_WARNING_STATUSES

log = structlog.get_logger("pulmogate.scu")


class AssociationFailed(ConnectionError):
    """The peer could not be reached or refused the association."""


@dataclass(frozen=True)
class Outgoing:
    """A stored object to send and the transfer syntaxes to offer for it, best first: each
    is proposed in a context of its own and the object goes in the first one accepted
    (decoded here when that is an uncompressed syntax and the file is compressed)."""

    path: Path
    sop_class_uid: str
    syntaxes: tuple[str, ...]


@dataclass
class StoreResult:
    """What happened to each object of one send."""

    sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    syntaxes: Counter[str] = field(default_factory=Counter)  # syntax name -> objects sent
    refused: set[str] = field(default_factory=set)  # preferred syntaxes the peer did not take
    decoded: int = 0  # compressed files sent uncompressed because the peer took no better

    @property
    def ok(self) -> bool:
        """True when every object was accepted (success or warning)."""
        return not self.failed


def send_at_once(event: Event) -> None:
    """EVT_CONN_OPEN handler: TCP_NODELAY, so a PDU never waits for the peer's delayed ACK.

    Without it each C-STORE to a dcmtk peer stalled about 40 ms (Nagle's algorithm)."""
    sock = event.assoc.dul.socket
    if sock is not None and sock.socket is not None:
        with contextlib.suppress(OSError):
            sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux


def ack_at_once(event: Event) -> None:
    """EVT_DATA_SENT handler: TCP_QUICKACK after each PDU we send, so the peer's answer is
    acknowledged at once instead of after the delayed-ACK timer.

    A peer with Nagle's algorithm on (dcmtk's storescp and the PACS built on dcmtk unless
    TCP_NODELAY is set in their environment) holds the second segment of each C-STORE
    response until its first is acknowledged: about 45 ms per object without this, 4 ms
    with it (272 results to storescp: 13 s -> about 1 s). Linux resets the option after a
    few ACKs, hence once per PDU."""
    sock = event.assoc.dul.socket
    if QUICKACK is not None and sock is not None and sock.socket is not None:
        with contextlib.suppress(OSError):
            sock.socket.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)


NO_DELAY: list[Any] = [(evt.EVT_CONN_OPEN, send_at_once), (evt.EVT_DATA_SENT, ack_at_once)]


def keep_responses(assoc: Association) -> None:
    """Give a DIMSE response that the association's reactor took back to ``send_c_store``.

    pynetdicom 3.0.4 pauses its reactor thread while ``send_c_store`` waits for the answer,
    but the pause is checked on a flag the reactor sets before it stops: a reactor held
    between the two (a GIL switch) goes on to take the C-STORE response off the queue, logs
    "Received unexpected C-STORE service message" and drops it, and the send waits for the
    DIMSE timeout (seen about once in five runs of tests/test_result_encodings.py, eleven
    associations at once; faster answers make it likelier). A response is never a request
    the reactor could serve, so it goes back on the queue the send is waiting on."""
    serve = getattr(assoc, "_serve_request", None)
    queue = getattr(getattr(assoc, "dimse", None), "msg_queue", None)
    if serve is None or queue is None:  # another pynetdicom: leave it as it is
        return

    def serve_or_return(msg: Any, context_id: int) -> None:
        if not msg.is_valid_request and msg.is_valid_response:
            queue.put((context_id, msg))
            log.info("response taken by the association reactor, handed back", type=msg.msg_type)
            return
        serve(msg, context_id)

    assoc._serve_request = serve_or_return  # type: ignore[method-assign]


def _header(item: Path | Dataset) -> Dataset:
    return item if isinstance(item, Dataset) else dcmread(item, stop_before_pixels=True)


def _full(item: Path | Dataset | Outgoing) -> Dataset:
    if isinstance(item, Outgoing):
        return dcmread(item.path)
    return item if isinstance(item, Dataset) else dcmread(item)


def _requested(items: Sequence[Path | Dataset | Outgoing]) -> list[tuple[str, str]]:
    """One (SOP class, transfer syntax) per context to propose, in a stable order."""
    contexts: dict[tuple[str, str], None] = {}
    for item in items:
        if isinstance(item, Outgoing):
            for syntax in item.syntaxes:
                contexts[(item.sop_class_uid, syntax)] = None
        else:
            header = _header(item)
            contexts[(str(header.SOPClassUID), str(header.file_meta.TransferSyntaxUID))] = None
    return sorted(contexts)


def _as_accepted(
    item: Outgoing, ds: Dataset, accepted: set[tuple[str, str]], result: StoreResult
) -> tuple[Dataset, str] | None:
    """``ds`` ready for the first of the item's syntaxes the peer accepted, and that
    syntax's name (None: the peer accepted none)."""
    from pulmogate.common.dicom.encoding import decoded

    choice = next((s for s in item.syntaxes if (item.sop_class_uid, s) in accepted), None)
    if choice is None:
        return None
    if choice != item.syntaxes[0]:
        result.refused.add(UID(item.syntaxes[0]).name)
    stored = UID(str(ds.file_meta.TransferSyntaxUID))
    if stored.is_compressed and stored != choice:
        if UID(choice).is_compressed:
            return None  # the sender prepares each file in its preferred syntax
        ds = decoded(ds)
        result.decoded += 1
    if not UID(choice).is_compressed:  # so pynetdicom takes exactly this context
        ds.file_meta.TransferSyntaxUID = UID(choice)
    return ds, UID(choice).name


def store(
    items: Sequence[Path | Dataset | Outgoing],
    host: str,
    port: int,
    called_aet: str,
    *,
    calling_aet: str = "PULMOGATE",
    timeout_s: float = 30.0,
    on_progress: Callable[[int], None] | None = None,
) -> StoreResult:
    """Send ``items`` over one association; raise ``AssociationFailed`` if none is made.

    A path or dataset is offered in the syntax it is stored in; an ``Outgoing`` in each of
    its syntaxes, and sent in the first the peer accepted."""
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    for sop_class, syntax in _requested(items):
        ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate(host, port, ae_title=called_aet, evt_handlers=NO_DELAY)
    if not assoc.is_established:
        reason = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "no answer"
        raise AssociationFailed(f"association with {called_aet}@{host}:{port} failed: {reason}")
    keep_responses(assoc)
    result = StoreResult()
    accepted = {
        (str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts
    }
    try:
        for item in items:
            ds = _full(item)
            syntax = UID(str(ds.file_meta.TransferSyntaxUID)).name
            if isinstance(item, Outgoing):
                ready = _as_accepted(item, ds, accepted, result)
                if ready is None:
                    result.failed.append(
                        (str(ds.SOPInstanceUID), "no offered transfer syntax accepted")
                    )
                    if on_progress:
                        on_progress(1)
                    continue
                ds, syntax = ready
            status = assoc.send_c_store(ds)
            code = int(status.Status) if status and "Status" in status else None
            if code == STATUS_SUCCESS or code in STORE_WARNING_STATUSES:
                result.sent += 1
                result.syntaxes[syntax] += 1
            else:
                reason = f"status 0x{code:04X}" if code is not None else "no response"
                result.failed.append((str(ds.SOPInstanceUID), reason))
                if not assoc.is_established:
                    break
            if on_progress:
                on_progress(1)
    finally:
        if assoc.is_established:
            assoc.release()
    return result


def echo(host: str, port: int, called_aet: str, *, calling_aet: str = "PULMOGATE") -> bool:
    """C-ECHO the peer; True on success."""
    ae = AE(ae_title=calling_aet)
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=called_aet, evt_handlers=NO_DELAY)
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return bool(status) and int(status.Status) == STATUS_SUCCESS
    finally:
        assoc.release()
