"""Disk use of the storage volume and the watermark above which nothing new is accepted."""

import errno
import shutil
from dataclasses import dataclass
from pathlib import Path

# A write that failed with one of these failed for want of space (or quota), not a fault.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True)
class DiskUsage:
    """How full a volume is."""

    total_bytes: int
    free_bytes: int

    @property
    def used_percent(self) -> float:
        """Used share in percent (space reserved for root counts as used)."""
        if not self.total_bytes:
            return 0.0
        return 100.0 * (self.total_bytes - self.free_bytes) / self.total_bytes


def disk_usage(path: Path) -> DiskUsage:
    """Usage of the volume holding ``path`` (created if missing)."""
    try:
        usage = shutil.disk_usage(path)
    except FileNotFoundError:
        path.mkdir(parents=True, exist_ok=True)
        usage = shutil.disk_usage(path)
    return DiskUsage(total_bytes=usage.total, free_bytes=usage.free)


def watermark_refusal(path: Path, max_used_percent: float) -> str | None:
    """The reason to refuse new data when the volume is fuller than allowed, else None."""
    used = disk_usage(path).used_percent
    if used > max_used_percent:
        return f"storage {used:.1f} % full, above the {max_used_percent:g} % limit"
    return None
