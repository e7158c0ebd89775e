"""Space kept beside the embedded SQLite database, so an operator can still sign in (and free
space) when something has filled the disk to 100 %.

SQLite cannot write a single row on a full volume, and signing in writes one (the session).
The api keeps ``RESERVE_BYTES`` allocated in ``DATA_DIR/db-reserve.bin`` while the volume is
below its watermark; a sign-in that finds the database full deletes the file and tries
again. The file comes back at the next start or sign-in once the volume is below the
watermark. With a server database (PostgreSQL) there is no reserve: its disk is not ours.
"""

import contextlib
import os
from pathlib import Path

import structlog

from pulmogate.common.disk import watermark_refusal
from pulmogate.common.settings import Settings

log = structlog.get_logger("pulmogate.api")

RESERVE_BYTES = 8 * 1024**2
RESERVE_NAME = "db-reserve.bin"
SQLITE_FULL = 13
PG_DISK_FULL = "53100"


def is_disk_full(exc: BaseException) -> bool:
    """Whether a database error says its disk is full (SQLite SQLITE_FULL, PostgreSQL 53100)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if getattr(seen, "sqlite_errorcode", None) == SQLITE_FULL:
            return True
        if getattr(seen, "sqlstate", None) == PG_DISK_FULL:
            return True
        if "database or disk is full" in str(seen):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


class DatabaseReserve:
    """The reserve file of the embedded database (a no-op with a server database)."""

    def __init__(self, settings: Settings) -> None:
        self.path: Path | None = None if settings.database_url else settings.data_dir / RESERVE_NAME
        self.max_used_percent = settings.disk_max_used_percent

    def keep(self) -> None:
        """Allocate the reserve if it is missing and the volume is below its watermark."""
        if self.path is None or self.path.exists():
            return
        if watermark_refusal(self.path.parent, self.max_used_percent):
            return
        partial = self.path.with_suffix(".partial")
        try:
            fd = os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(partial, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            log.warning("database reserve not allocated", error=str(exc))

    def release(self) -> bool:
        """Free the reserve; True when there was one to free."""
        if self.path is None:
            return False
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        log.error(
            "storage full: the database reserve was released so sign-in keeps working; "
            "free space on the storage volume",
            reserve_bytes=RESERVE_BYTES,
        )
        return True
