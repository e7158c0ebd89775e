"""Hostile DICOM peers built from raw sockets and pynetdicom, and what the tests measure.

Attackers connect from other loopback addresses (127.0.0.2 and up: Linux routes all of
127.0.0.0/8 to lo) so the gateway can tell them from the known PACS on 127.0.0.1.
"""

import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from services.receiver.tests.helpers import ct_slice

CALLED_AE = "PULMOGATE"
APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
VERIFICATION_UID = b"1.2.840.10008.1.1"
IMPLICIT_LE = b"1.2.840.10008.1.2"


def _item(item_type: int, body: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(body)) + body


def associate_rq(calling: str, called: str = CALLED_AE) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing Verification (PS3.8 9.3.2), built by hand."""
    context = bytes([1, 0, 0, 0]) + _item(0x30, VERIFICATION_UID) + _item(0x40, IMPLICIT_LE)
    user = _item(0x51, struct.pack(">L", 16384)) + _item(0x52, b"1.2.826.0.1.3680043.9.3811.9")
    body = (
        struct.pack(">HH", 1, 0)
        + called.ljust(16).encode()
        + calling.ljust(16).encode()
        + bytes(32)
        + _item(0x10, APPLICATION_CONTEXT)
        + _item(0x20, context)
        + _item(0x50, user)
    )
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


def connect_from(address: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the gateway from a chosen loopback source address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((address, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def raw_association(address: str, port: int, calling: str) -> socket.socket:
    """A Verification association over a raw socket (A-ASSOCIATE-AC read and checked)."""
    sock = connect_from(address, port)
    sock.sendall(associate_rq(calling))
    header = _recv_exactly(sock, 6)
    pdu_type, _, length = struct.unpack(">BBL", header)
    _recv_exactly(sock, length)
    if pdu_type != 0x02:
        sock.close()
        raise AssertionError(f"association not accepted: PDU type 0x{pdu_type:02X}")
    return sock


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def flood(sock: socket.socket, header: bytes, total_bytes: int, chunk: int = 1 << 20) -> int:
    """Send ``header`` then up to ``total_bytes`` of filler; the bytes the peer took."""
    filler = b"\x00" * chunk
    sent = 0
    try:
        sock.sendall(header)
        while sent < total_bytes:
            sock.sendall(filler)
            sent += chunk
    except OSError:
        pass
    finally:
        sock.close()
    return sent


def p_data_command_fragments(fragment: int = 16000) -> bytes:
    """One P-DATA-TF PDU holding a command fragment that is never the last one."""
    pdv = struct.pack(">LB", fragment + 2, 1) + b"\x01" + b"\x00" * fragment
    return struct.pack(">BBL", 0x04, 0, len(pdv)) + pdv


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the gateway closed the connection (EOF or reset), None if it did not."""
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 0.1)
        if ready:
            try:
                if not sock.recv(65536):
                    return time.monotonic() - start
            except OSError:
                return time.monotonic() - start
    return None


@dataclass
class SlowLoris:
    """Connections that send their A-ASSOCIATE-RQ one byte every ``interval_s``."""

    sockets: list[socket.socket]
    interval_s: float
    opened_at: dict[int, float] = field(default_factory=dict)  # id(socket) -> connect time
    closed_after: dict[int, float] = field(default_factory=dict)  # ... -> seconds it lived

    def _closed(self, sock: socket.socket) -> None:
        self.closed_after[id(sock)] = time.monotonic() - self.opened_at[id(sock)]

    def run(self, duration_s: float) -> None:
        """Trickle bytes and note when the gateway closes each connection."""
        request = associate_rq("SLOWLORIS")
        offset = {id(s): 0 for s in self.sockets}
        next_send = time.monotonic()
        stop = time.monotonic() + duration_s
        while time.monotonic() < stop and len(self.closed_after) < len(self.sockets):
            live = [s for s in self.sockets if id(s) not in self.closed_after]
            ready, _, _ = select.select(live, [], [], 0.05)
            for sock in ready:
                try:
                    gone = not sock.recv(65536)
                except OSError:
                    gone = True
                if gone:
                    self._closed(sock)
            if time.monotonic() >= next_send:
                next_send += self.interval_s
                for sock in live:
                    if id(sock) in self.closed_after:
                        continue
                    try:
                        sock.send(request[offset[id(sock)] : offset[id(sock)] + 1])
                        offset[id(sock)] += 1
                    except OSError:
                        self._closed(sock)
        for sock in self.sockets:
            sock.close()


def open_many(addresses: list[str], per_address: int, port: int) -> dict[socket.socket, float]:
    """``per_address`` connections from each address, with the time each one connected."""
    opened: dict[socket.socket, float] = {}
    for address in addresses:
        for _ in range(per_address):
            sock = connect_from(address, port, timeout=5)
            opened[sock] = time.monotonic()
    return opened


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@contextmanager
def peak_rss(pid: int) -> Iterator[list[float]]:
    """Sample the RSS every 50 ms while the block runs: yields [baseline, peak]."""
    figures = [rss_mb(pid), rss_mb(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            figures[1] = max(figures[1], rss_mb(pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield figures
    finally:
        stop.set()
        sampler.join()
        figures[1] = max(figures[1], rss_mb(pid))


@dataclass
class PacsVisit:
    """What the known PACS got: association, C-ECHO and C-STORE statuses, and how long."""

    established: bool
    echo: int | None = None
    store: int | None = None
    seconds: float = 0.0

    @property
    def served(self) -> bool:
        return self.established and self.echo == 0 and self.store == 0


def pacs_visit(port: int, calling: str = "PACS") -> PacsVisit:
    """The known PACS associates from 127.0.0.1, C-ECHOes and C-STOREs one CT slice."""
    start = time.monotonic()
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title=CALLED_AE)
    if not assoc.is_established:
        return PacsVisit(False, seconds=time.monotonic() - start)
    try:
        echo = assoc.send_c_echo()
        store = assoc.send_c_store(ct_slice(generate_uid(), generate_uid(), 0))
        return PacsVisit(
            True,
            int(echo.Status) if "Status" in echo else None,
            int(store.Status) if "Status" in store else None,
            time.monotonic() - start,
        )
    finally:
        assoc.release()


def refused_counts(api: str) -> dict[str, float]:
    """``pulmogate_dicom_refused_total`` by reason, from the gateway's /metrics."""
    text = httpx.get(f"{api}/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("pulmogate_dicom_refused_total{"):
            labels, value = line.rsplit(" ", 1)
            reason = labels.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] = float(value)
    return counts
