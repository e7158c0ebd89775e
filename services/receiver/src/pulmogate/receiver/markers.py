"""Durable marks of the series folders the receiver is writing into: where recovery looks.

Before the first instance of a series is written by an association, an empty file
``<storage>/receiving/<study UID>+<series UID>`` is created and its folder fsynced, so a
crash after an acknowledgement always leaves a mark next to the file whose row may be
missing. The mark goes (unsynced: a mark that comes back only makes recovery look again)
when no association of this process holds the series and all its rows are committed.
One receiver process per storage volume (docs/deploy.md): marks are its own.
"""

import os
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pulmogate.common.storage import fsync_folder

SEPARATOR = "+"  # never in a UID


class SeriesMarkers:
    """Marks of the series being written, with the associations of this process holding each."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._holders: Counter[tuple[str, str]] = Counter()
        self._marked: set[tuple[str, str]] = set()

    def path(self, study_uid: str, series_uid: str) -> Path:
        """The mark of one series (UIDs validated by the caller)."""
        return self.folder / f"{study_uid}{SEPARATOR}{series_uid}"

    def hold(self, study_uid: str, series_uid: str) -> None:
        """An association starts writing the series: mark it durably first."""
        key = (study_uid, series_uid)
        with self._lock:
            self._holders[key] += 1
            if key in self._marked:
                return
            if not self.folder.is_dir():
                self.folder.mkdir(parents=True, exist_ok=True)
                fsync_folder(self.folder.parent)
            fd = os.open(self.path(*key), os.O_WRONLY | os.O_CREAT, 0o644)
            os.close(fd)
            fsync_folder(self.folder)
            self._marked.add(key)

    def release(self, study_uid: str, series_uid: str) -> None:
        """An association that held the series ended (its rows are committed)."""
        with self._lock:
            key = (study_uid, series_uid)
            self._holders[key] -= 1
            if self._holders[key] <= 0:
                del self._holders[key]

    def drop_idle(self, pending: Callable[[str], bool]) -> int:
        """Remove the marks no association holds and with no pending instance; how many."""
        dropped = 0
        with self._lock:
            for key in [k for k in self._marked if k not in self._holders]:
                if pending(key[1]):
                    continue
                self.path(*key).unlink(missing_ok=True)
                self._marked.discard(key)
                dropped += 1
        return dropped

    def on_disk(self) -> list[tuple[str, str]]:
        """(study UID, series UID) of every mark in the folder (left by an earlier process)."""
        if not self.folder.is_dir():
            return []
        found = []
        for entry in sorted(os.listdir(self.folder)):
            study_uid, sep, series_uid = entry.partition(SEPARATOR)
            if sep and study_uid and series_uid:
                found.append((study_uid, series_uid))
        return found

    def remove(self, study_uid: str, series_uid: str) -> None:
        """Remove a mark recovery has dealt with."""
        self.path(study_uid, series_uid).unlink(missing_ok=True)
