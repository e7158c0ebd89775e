"""Send a job's output files to one destination over one association."""

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pulmogate.common.dicom.scu import AssociationFailed, store


@dataclass(frozen=True)
class Peer:
    """Where to send: a destination's address and AE title."""

    name: str
    host: str
    port: int
    ae_title: str

    def __str__(self) -> str:
        return f"{self.name} ({self.ae_title}@{self.host}:{self.port})"


@dataclass(frozen=True)
class DispatchOutcome:
    """The result of one attempt: how many objects were accepted, and the error if any."""

    sent: int
    total: int
    error: str | None

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


def _send(paths: Sequence[Path], peer: Peer, calling_aet: str, timeout_s: float) -> DispatchOutcome:
    """Blocking C-STORE of every file (runs in a worker thread)."""
    try:
        result = store(
            list(paths),
            peer.host,
            peer.port,
            peer.ae_title,
            calling_aet=calling_aet,
            timeout_s=timeout_s,
        )
    except AssociationFailed as exc:
        return DispatchOutcome(0, len(paths), f"{exc}{_network_detail(peer, timeout_s)}")
    except Exception as exc:
        return DispatchOutcome(0, len(paths), f"{type(exc).__name__}: {exc}")
    if result.ok and result.sent == len(paths):
        return DispatchOutcome(result.sent, len(paths), None)
    if result.failed:
        uid, reason = result.failed[0]
        error = (
            f"{peer.ae_title} refused {len(result.failed)} of {len(paths)} objects "
            f"({reason}, first {uid})"
        )
    else:
        error = f"association ended after {result.sent} of {len(paths)} objects"
    return DispatchOutcome(result.sent, len(paths), error)


async def dispatch(
    paths: Sequence[Path], peer: Peer, *, calling_aet: str, timeout_s: float
) -> DispatchOutcome:
    """C-STORE ``paths`` to ``peer`` without blocking the event loop."""
    return await asyncio.to_thread(_send, paths, peer, calling_aet, timeout_s)
