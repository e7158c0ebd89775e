"""What a peer can make the receiver hold: PDU lengths, read deadlines, DIMSE message sizes.

pynetdicom 3.0 reads a PDU by trusting its length field (``socket.recv(pdu_length)`` into a
growing bytearray: a P-DATA header of length 0xFFFFFFFF makes it buffer whatever follows),
on an accepted socket without a timeout, inside the DUL thread's loop: while one PDU is
being read slowly, neither the ARTIM timer nor the idle timer is looked at. Its timeouts
cover less than their names suggest:

- ``acse_timeout`` (also the ARTIM timer): how long the association thread waits for the
  decoded A-ASSOCIATE-RQ; when it expires during a slow read, ``Association.kill()`` waits
  for the DUL thread, which is stuck in ``recv``, forever, and the slot stays taken;
- ``network_timeout`` (the idle timer): checked only between PDUs of an established
  association (and set on the listening socket, not on accepted ones);
- ``dimse_timeout``: how long we wait for a DIMSE answer as a requestor; nothing here.

``BoundedDUL`` reads each PDU with a deadline (the association request within
``request_timeout_s`` of the connection, any later PDU within ``idle_timeout_s`` of its
first byte), refuses a P-DATA-TF longer than the maximum length we advertised and any other
PDU longer than ``CONTROL_PDU_MAX``, and stops reading while decoded DIMSE messages wait
unserved (TCP back-pressure). It reads ahead (at most ``READ_CHUNK`` beyond the PDU it
needs), so most PDUs of a C-STORE are decoded without a system call. ``BoundedDIMSE``
refuses a DIMSE message whose command set or data set grows past its bound. A refusal sends
an A-ABORT (service provider, invalid PDU parameter value), closes the connection and is
counted in ``pulmogate_dicom_refused_total``.
"""

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ

from pulmogate.common.dicom.syntaxes import ACCEPTED_STORAGE_CLASSES
from pulmogate.common.metrics import DICOM_REFUSED

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.dimse import _QueueItem
    from pynetdicom.dul import _PDUPrimitiveType
    from pynetdicom.pdu_primitives import P_DATA

log = structlog.get_logger("pulmogate.receiver")

P_DATA_TF = 0x04
ASSOCIATE_RQ, ASSOCIATE_AC = 0x01, 0x02
PDU_TYPES = frozenset(range(0x01, 0x08))
# An A-ASSOCIATE-RQ with 128 presentation contexts of 16 transfer syntaxes each and a
# user identity is well under this; release, abort and reject PDUs have 4-byte bodies.
ASSOCIATE_PDU_MAX = 1 << 20
CONTROL_PDU_MAX = 1024
COMMAND_SET_MAX = 64 * 1024
SMALL_MESSAGE_MAX = 1 << 20  # C-ECHO, C-FIND identifiers, anything on a refused association
QUEUED_MESSAGES_MAX = 2
IDLE_WAIT_S = 0.05  # the longest the reactor waits before looking at its timers again
BACK_PRESSURE_PAUSE_S = 0.001
MESSAGE_WAIT_S = 0.01
ABORT_INVALID_PARAMETER = 0x06
READ_CHUNK = 1 << 16
PDU_HEADER = 6
DEADLINE_SLACK_S = 1.0  # a read may end this much after its deadline (no settimeout per recv)
STORAGE_CLASSES = frozenset(str(uid) for uid in ACCEPTED_STORAGE_CLASSES)


@dataclass(frozen=True)
class EdgeLimits:
    """The bounds one association is read under (see the README's configuration table)."""

    max_pdu_length: int = 16382
    max_instance_bytes: int = 1 << 30
    request_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    # The SOP classes a named sender may C-STORE up to max_instance_bytes of (others: 1 MiB).
    store_classes: frozenset[str] = STORAGE_CLASSES


class PeerRefused(Exception):
    """The peer broke a bound: the association is aborted with this reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PeerGone(Exception):
    """The connection closed (or failed) in the middle of a PDU."""


def _peer(assoc: "Association") -> dict[str, str]:
    requestor = assoc.requestor
    calling = getattr(getattr(requestor, "primitive", None), "calling_ae_title", "") or ""
    return {"peer_ip": str(requestor.address), "calling_ae": str(calling).strip()}


class BoundedDUL(DULServiceProvider):
    """pynetdicom's DUL with bounded PDU reads (see the module docstring)."""

    def __init__(
        self,
        assoc: "Association",
        limits: EdgeLimits,
        on_request_read: Callable[[], None] = lambda: None,
        on_closed: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(assoc)
        self.limits = limits
        self.on_request_read = on_request_read
        self.on_closed = on_closed
        self._connected_at = time.monotonic()
        # The reactor waits in select (see _is_transport_event), never in a fixed sleep.
        self._run_loop_delay = 0.0
        # Made when the reactor starts (a connection refused at admission never starts it).
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        # Bytes read and not yet decoded: at most one PDU and READ_CHUNK more. Reading ahead
        # serves most PDUs without a system call (each releases and retakes the GIL).
        self._inbox = bytearray()

    def _is_transport_event(self) -> bool:
        """Leave the socket unread while decoded messages wait (the peer's TCP window fills);
        otherwise wait for the next PDU or for something to send, whichever comes first.

        pynetdicom polls: a 1 ms sleep whenever one loop found nothing to do, so each
        C-STORE waited for the response to be noticed and again for the next request (about
        1.5 ms of a 3-5 ms exchange). Here the thread waits in ``select`` on the socket and
        on a wake-up pipe that ``send_pdu`` writes to, at most ``IDLE_WAIT_S`` so the timers
        are still looked at; a thousand idle connections cost no CPU.
        """
        if self.assoc.dimse.msg_queue.qsize() >= QUEUED_MESSAGES_MAX:
            time.sleep(BACK_PRESSURE_PAUSE_S)
            return False
        wrapper = self.socket
        raw = wrapper.socket if wrapper is not None else None
        if raw is None:
            time.sleep(BACK_PRESSURE_PAUSE_S)
            return False
        if self._inbox_holds_pdu():
            self._read_pdu_data()
            return True
        woken = False
        if (
            self.state_machine.current_state != "Sta13"
            and self.event_queue.empty()
            and self.to_provider_queue.empty()
        ):
            with contextlib.suppress(OSError, ValueError):
                waits = [raw] if self._wake_r is None else [raw, self._wake_r]
                ready, _, _ = select.select(waits, [], [], IDLE_WAIT_S)
                if self._wake_r is not None and self._wake_r in ready:
                    self._drain_wake()
                    woken = True
                if raw in ready:  # pynetdicom would ask select again (``socket.ready``)
                    self._read_pdu_data()
                    return True
        read = bool(super()._is_transport_event())
        if not (read or woken) and self.event_queue.empty() and self.to_provider_queue.empty():
            # Nothing read, nothing to send or do: pause as pynetdicom does, so that a socket
            # select finds readable without a PDU (one being closed) never makes this spin.
            time.sleep(BACK_PRESSURE_PAUSE_S)
        return read

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\x00")

    def _drain_wake(self) -> None:
        if self._wake_r is not None:
            with contextlib.suppress(OSError):
                while self._wake_r.recv(4096):
                    pass

    def send_pdu(self, primitive: "_PDUPrimitiveType") -> None:
        """Queue a primitive to send and wake the reactor for it."""
        super().send_pdu(primitive)
        self._wake()

    def kill_dul(self) -> None:
        """Stop the reactor (woken at once, not at its next timeout)."""
        super().kill_dul()
        self._wake()

    def stop_dul(self) -> bool:
        """As pynetdicom's (stop when in Sta1), without its 1 ms polling."""
        if self.state_machine.current_state != "Sta1":
            return False
        self._kill_thread = True
        self._wake()
        if self.is_alive() and threading.current_thread() is not self:
            self.join()
        return True

    def close_wake(self) -> None:
        """Close the wake-up pipe (the reactor has ended)."""
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def run_reactor(self) -> None:
        """pynetdicom's reactor; the wake-up pipe is closed however it ends."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._wake_r, self._wake_w = wake_r, wake_w
        try:
            super().run_reactor()
        finally:
            self.close_wake()

    def _awaiting_request(self) -> bool:
        """Before the A-ASSOCIATE-RQ (Sta1 only until the connection event is processed)."""
        return self.state_machine.current_state in ("Sta1", "Sta2")

    def _deadline(self) -> float:
        if self._awaiting_request():
            return self._connected_at + self.limits.request_timeout_s
        return time.monotonic() + self.limits.idle_timeout_s

    def _limit(self, pdu_type: int) -> int:
        if pdu_type == P_DATA_TF:
            return self.limits.max_pdu_length
        if pdu_type in (ASSOCIATE_RQ, ASSOCIATE_AC):
            return ASSOCIATE_PDU_MAX
        return CONTROL_PDU_MAX

    def _inbox_holds_pdu(self) -> bool:
        """Whether a whole PDU (or a header already to be refused) has been read ahead."""
        if len(self._inbox) < PDU_HEADER:
            return False
        pdu_type, _, length = struct.unpack_from(">BBL", self._inbox)
        if pdu_type not in PDU_TYPES or length > self._limit(pdu_type):
            return True
        return len(self._inbox) >= PDU_HEADER + length

    def _fill(
        self, raw: socket.socket, count: int, deadline: float, *, awaiting_request: bool
    ) -> None:
        """Read until the inbox holds ``count`` bytes (``READ_CHUNK`` more if they have
        arrived) before ``deadline``, or ``PeerRefused`` / ``PeerGone``."""
        idle = self.limits.idle_timeout_s
        try:
            while len(self._inbox) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                timeout = raw.gettimeout()
                if timeout is None or remaining < timeout - DEADLINE_SLACK_S:
                    raw.settimeout(remaining)  # a recv never waits past the deadline
                chunk = raw.recv(max(count - len(self._inbox), READ_CHUNK))
                if not chunk:
                    raise PeerGone("connection closed in the middle of a PDU")
                self._inbox += chunk
        except TimeoutError as exc:
            if awaiting_request:
                raise PeerRefused(
                    "request_timeout",
                    f"association request not received within {self.limits.request_timeout_s:g} s",
                ) from exc
            raise PeerRefused("idle_timeout", f"PDU not received within {idle:g} s") from exc
        except OSError as exc:
            raise PeerGone(f"connection failed: {type(exc).__name__}") from exc
        finally:
            with contextlib.suppress(OSError):
                if raw.gettimeout() != idle:
                    raw.settimeout(idle)  # bounds our sends too

    def _read_pdu_data(self) -> None:
        """Read one PDU within its deadline and length bound, then decode it as pynetdicom does."""
        wrapper = self.socket
        raw = wrapper.socket if wrapper is not None else None
        if raw is None:
            self.event_queue.put("Evt17")
            return
        deadline = self._deadline()
        awaiting = self._awaiting_request()
        try:
            self._fill(raw, PDU_HEADER, deadline, awaiting_request=awaiting)
            pdu_type, _, length = struct.unpack_from(">BBL", self._inbox)
            if pdu_type not in PDU_TYPES:
                self._inbox.clear()
                self.event_queue.put("Evt19")  # pynetdicom: unrecognised PDU, A-ABORT
                return
            limit = self._limit(pdu_type)
            if length > limit:
                code = "pdu_too_long" if pdu_type == P_DATA_TF else "control_pdu_too_long"
                raise PeerRefused(
                    code, f"PDU type 0x{pdu_type:02X} of {length} bytes exceeds {limit}"
                )
            self._fill(raw, PDU_HEADER + length, deadline, awaiting_request=awaiting)
            encoded = self._inbox[: PDU_HEADER + length]
            del self._inbox[: PDU_HEADER + length]
        except PeerRefused as refused:
            self.refuse(refused)
            return
        except PeerGone:
            self.event_queue.put("Evt17")
            self.on_closed()
            return
        try:
            pdu, event = self._decode_pdu(encoded)
        except Exception:
            self.event_queue.put("Evt19")
            return
        if pdu_type == ASSOCIATE_RQ:
            self.on_request_read()
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def refuse(self, refused: PeerRefused) -> None:
        """A-ABORT the peer, close the connection (Evt17 ends the association), count it."""
        self._inbox.clear()
        DICOM_REFUSED.labels(reason=refused.code).inc()
        log.warning(
            "association aborted", code=refused.code, reason=str(refused), **_peer(self.assoc)
        )
        wrapper = self.socket
        raw = wrapper.socket if wrapper is not None else None
        if raw is not None:
            abort = A_ABORT_RQ()
            abort.source = 0x02
            abort.reason_diagnostic = ABORT_INVALID_PARAMETER
            with contextlib.suppress(OSError):
                raw.settimeout(1.0)
                raw.sendall(abort.encode())
        if wrapper is not None:
            wrapper.close()
        # The connection is gone now, not when the association thread notices (a refused
        # request used to hold its pending slot until the ARTIM timer expired).
        self.on_closed()


class BoundedDIMSE(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider with a size bound on each message being reassembled."""

    def __init__(
        self,
        assoc: "Association",
        limits: EdgeLimits,
        may_store: Callable[["Association"], bool],
    ) -> None:
        super().__init__(assoc)
        self.limits = limits
        self.may_store = may_store
        self._command_bytes = 0
        self._data_bytes = 0

    def _data_limit(self, context_id: int) -> int:
        context = self.assoc._accepted_cx.get(context_id)
        if context is None or str(context.abstract_syntax) not in self.limits.store_classes:
            return SMALL_MESSAGE_MAX
        return self.limits.max_instance_bytes if self.may_store(self.assoc) else SMALL_MESSAGE_MAX

    def receive_primitive(self, primitive: "P_DATA") -> None:
        """Count each fragment against its message's bound before pynetdicom keeps it."""
        if self.message is None:
            self._command_bytes = self._data_bytes = 0
        for context_id, data in primitive.presentation_data_value_list:
            if data and data[0] & 0x01:
                self._command_bytes += len(data) - 1
                if self._command_bytes > COMMAND_SET_MAX:
                    self._refuse(f"DIMSE command set exceeds {COMMAND_SET_MAX} bytes")
                    return
            else:
                self._data_bytes += max(len(data) - 1, 0)
                limit = self._data_limit(context_id)
                if self._data_bytes > limit:
                    self._refuse(f"DIMSE data set exceeds {limit} bytes")
                    return
        super().receive_primitive(primitive)

    def get_msg(self, block: bool = False) -> "_QueueItem":
        """The next decoded message; without ``block``, waiting up to ``MESSAGE_WAIT_S`` for
        one to arrive (the association reactor calls this after its 1 ms sleep: a message
        that completes meanwhile is served at once instead of at the next round)."""
        if not block:
            queue = self.msg_queue
            with queue.not_empty:
                if not queue._qsize():
                    queue.not_empty.wait(MESSAGE_WAIT_S)
        return super().get_msg(block=block)

    def _refuse(self, message: str) -> None:
        self.message = None
        dul = self.assoc.dul
        if isinstance(dul, BoundedDUL):
            dul.refuse(PeerRefused("message_too_long", message))
