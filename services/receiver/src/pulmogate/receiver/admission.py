"""Who gets a connection slot and an association slot, so no peer can take them all.

Two phases, both counted here (thread-safe; pynetdicom's threads call in):

- *pending*: a TCP connection whose A-ASSOCIATE-RQ has not been read yet. At most
  ``pending_per_address`` per IP address and ``max_associations`` in all; an address that
  an enabled rule names by IP is not held to the total (it is recognised before its request
  is read). A pending connection lasts at most the request timeout (ARTIM).
- *associated*: once the request is read, the calling AE title and address are known.
  At most ``max_associations`` in all, ``per_peer`` for one (calling AE, address) pair, and
  ``unknown`` for every peer no enabled rule names together, so the other slots stay free
  for the peers the rules name.
"""

import threading
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class AdmissionLimits:
    """Slot counts (README: MAX_ASSOCIATIONS, DICOM_MAX_*)."""

    max_associations: int = 64
    pending_per_address: int = 16
    per_peer: int = 32
    unknown: int = 8


@dataclass(frozen=True)
class Refusal:
    """Why a connection or an association gets no slot (``code`` labels the metric)."""

    code: str
    message: str


@dataclass
class _Slot:
    address: str
    known_address: bool
    pending: bool = True
    peer: tuple[str, str] | None = None
    known: bool = False


class Admission:
    """The slot book of one receiver."""

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._slots: dict[int, _Slot] = {}
        self._pending_by_address: Counter[str] = Counter()
        self._pending_counted = 0
        self._associated = 0
        self._by_peer: Counter[tuple[str, str]] = Counter()
        self._unknown = 0

    def connect(self, key: int, address: str, *, known_address: bool = False) -> Refusal | None:
        """A new TCP connection from ``address``: a pending slot, or why not."""
        with self._lock:
            if self._pending_by_address[address] >= self.limits.pending_per_address:
                return Refusal(
                    "pending_per_address",
                    f"{address} already has {self.limits.pending_per_address} connections "
                    "that have not sent their association request",
                )
            if not known_address and self._pending_counted >= self.limits.max_associations:
                return Refusal(
                    "pending_total",
                    f"{self.limits.max_associations} connections are waiting for their "
                    "association request",
                )
            self._slots[key] = _Slot(address, known_address)
            self._pending_by_address[address] += 1
            if not known_address:
                self._pending_counted += 1
            return None

    def request_read(self, key: int) -> None:
        """Connection ``key``'s A-ASSOCIATE-RQ has been read: it is no longer pending."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None:
                self._end_pending(slot)

    def associate(self, key: int, calling_ae: str, *, known: bool) -> Refusal | None:
        """The request of connection ``key`` was read: an association slot, or why not."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                return Refusal("unknown_connection", "connection was not admitted")
            self._end_pending(slot)
            peer = (calling_ae, slot.address)
            refusal = self._refusal(peer, known)
            if refusal is not None:
                del self._slots[key]
                return refusal
            slot.peer, slot.known = peer, known
            self._associated += 1
            self._by_peer[peer] += 1
            if not known:
                self._unknown += 1
            return None

    def _refusal(self, peer: tuple[str, str], known: bool) -> Refusal | None:
        calling_ae, address = peer
        if self._associated >= self.limits.max_associations:
            return Refusal(
                "associations_total",
                f"all {self.limits.max_associations} association slots are taken",
            )
        if self._by_peer[peer] >= self.limits.per_peer:
            return Refusal(
                "associations_per_peer",
                f"calling AE {calling_ae!r} from {address} already has "
                f"{self.limits.per_peer} associations",
            )
        if not known and self._unknown >= self.limits.unknown:
            return Refusal(
                "associations_unknown",
                f"the {self.limits.unknown} slots for peers no rule names are taken",
            )
        return None

    def _end_pending(self, slot: _Slot) -> None:
        if slot.pending:
            slot.pending = False
            self._pending_by_address[slot.address] -= 1
            if not self._pending_by_address[slot.address]:
                del self._pending_by_address[slot.address]
            if not slot.known_address:
                self._pending_counted -= 1

    def end(self, key: int) -> None:
        """Connection ``key`` is gone: free whatever slot it held."""
        with self._lock:
            slot = self._slots.pop(key, None)
            if slot is None:
                return
            self._end_pending(slot)
            if slot.peer is None:
                return
            self._associated -= 1
            self._by_peer[slot.peer] -= 1
            if not self._by_peer[slot.peer]:
                del self._by_peer[slot.peer]
            if not slot.known:
                self._unknown -= 1

    def counts(self) -> dict[str, int]:
        """Slots in use now (for logs and tests)."""
        with self._lock:
            return {
                "pending": sum(self._pending_by_address.values()),
                "associated": self._associated,
                "unknown": self._unknown,
            }
