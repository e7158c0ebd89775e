"""Instances being stored or acknowledged whose rows are not committed yet, by SOP Instance UID.

Association threads reserve an instance before writing it (a SOP Instance UID already pending
in another series is refused at once, as a committed one is); the recorder settles it once its
row is committed, or the store settles it when it answers a failure. Completion leaves a
series with pending instances alone: an instance acknowledged is one that arrived.
"""

import threading
from collections import Counter


class PendingInstances:
    """Thread-safe counts of pending instances per SOP Instance UID and per series."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_sop: dict[str, tuple[str, int]] = {}
        self._by_series: Counter[str] = Counter()

    def reserve(self, sop_uid: str, series_uid: str) -> str | None:
        """Count one more pending store of ``sop_uid``; the other series when it is pending
        in another one (nothing reserved then)."""
        with self._lock:
            held = self._by_sop.get(sop_uid)
            if held is not None and held[0] != series_uid:
                return held[0]
            self._by_sop[sop_uid] = (series_uid, (held[1] if held else 0) + 1)
            self._by_series[series_uid] += 1
            return None

    def settle(self, sop_uid: str) -> None:
        """One pending store of ``sop_uid`` is recorded or was refused."""
        with self._lock:
            held = self._by_sop.get(sop_uid)
            if held is None:
                return
            series_uid, count = held
            if count > 1:
                self._by_sop[sop_uid] = (series_uid, count - 1)
            else:
                del self._by_sop[sop_uid]
            self._by_series[series_uid] -= 1
            if self._by_series[series_uid] <= 0:
                del self._by_series[series_uid]

    def holds(self, series_uid: str) -> bool:
        """Whether an instance of the series is pending."""
        with self._lock:
            return self._by_series.get(series_uid, 0) > 0

    def __len__(self) -> int:
        with self._lock:
            return sum(self._by_series.values())
