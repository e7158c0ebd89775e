"""Unpack uploaded files into a staging folder, refusing zip-slip, zip bombs and symlinks.

Limits (per upload): at most ``MAX_FILES`` files, ``MAX_TOTAL_BYTES`` unpacked, each zip
member at most ``MAX_MEMBER_BYTES`` and compressed at most ``MAX_RATIO``:1. Sizes are
enforced while reading, not taken from the zip's own (forgeable) headers.
"""

import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

MAX_FILES = 10_000
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_MEMBER_BYTES = 512 * 1024**2
MAX_RATIO = 100
CHUNK = 1024 * 1024
ZIP_MAGIC = b"PK\x03\x04"
SKIPPED_NAMES = frozenset({"DICOMDIR", ".DS_Store", "Thumbs.db", "desktop.ini"})


class UnsafeUpload(ValueError):
    """An upload refused as a whole; ``name`` is the offending file (as the user named it)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class StagedFile:
    """An unpacked file waiting to be checked and stored."""

    name: str
    path: Path
    size: int


@dataclass
class Budget:
    """What is left of the upload's limits."""

    files: int = MAX_FILES
    bytes: int = MAX_TOTAL_BYTES

    def take(self, name: str, size: int) -> None:
        """Account for ``size`` more bytes of ``name``."""
        self.bytes -= size
        if self.bytes < 0:
            raise UnsafeUpload(name, f"upload exceeds {MAX_TOTAL_BYTES // 1024**2} MiB unpacked")

    def count(self, name: str) -> None:
        """Account for one more file."""
        self.files -= 1
        if self.files < 0:
            raise UnsafeUpload(name, f"upload has more than {MAX_FILES} files")


def _copy(src: IO[bytes], dest: Path, name: str, budget: Budget, limit: int, too_big: str) -> int:
    """Copy at most ``limit`` bytes (more is refused with ``too_big``); return the size."""
    size = 0
    with dest.open("wb") as out:
        while chunk := src.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise UnsafeUpload(name, too_big)
            budget.take(name, len(chunk))
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size


def _safe_member_name(info: zipfile.ZipInfo, archive: str) -> str:
    """The member's name if it stays inside the archive's folder; a refusal otherwise."""
    raw = info.filename
    label = f"{archive}/{raw}"
    if "\\" in raw or "\x00" in raw:
        raise UnsafeUpload(label, "unsafe path in zip (backslash or NUL)")
    path = PurePosixPath(raw)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise UnsafeUpload(label, "unsafe path in zip (absolute or '..': zip-slip)")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeUpload(label, "symbolic link in zip")
    return raw


def _skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return "__MACOSX" in parts or (bool(parts) and parts[-1] in SKIPPED_NAMES)


def _unzip(
    archive_name: str, src: IO[bytes], staging: Path, budget: Budget
) -> Iterator[StagedFile]:
    try:
        archive = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeUpload(archive_name, f"not a readable zip: {exc}") from exc
    with archive:
        for info in archive.infolist():
            name = _safe_member_name(info, archive_name)
            if info.is_dir() or _skipped(name):
                continue
            label = f"{archive_name}/{name}"
            if info.flag_bits & 0x1:
                raise UnsafeUpload(label, "encrypted zip member")
            if info.file_size > MAX_MEMBER_BYTES:
                raise UnsafeUpload(label, f"file exceeds {MAX_MEMBER_BYTES // 1024**2} MiB")
            ratio_limit = max(info.compress_size, 1) * MAX_RATIO
            if info.file_size > ratio_limit:
                raise UnsafeUpload(label, f"compression ratio above {MAX_RATIO}:1 (zip bomb)")
            budget.count(label)
            dest = staging / f"{budget.files:06d}.dcm"
            # The headers may lie: the real size is capped while reading.
            limit = min(ratio_limit, MAX_MEMBER_BYTES, info.file_size)
            try:
                with archive.open(info) as member:
                    size = _copy(
                        member, dest, label, budget, limit, "larger than its zip header says"
                    )
            except UnsafeUpload:
                raise
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise UnsafeUpload(label, f"damaged zip member: {exc}") from exc
            yield StagedFile(label, dest, size)


def stage(name: str, src: IO[bytes], staging: Path, budget: Budget) -> Iterator[StagedFile]:
    """Stage one uploaded file: a zip is unpacked member by member, anything else is copied."""
    head = src.read(4)
    src.seek(0)
    if head == ZIP_MAGIC:
        yield from _unzip(name, src, staging, budget)
        return
    if _skipped(name):
        return
    budget.count(name)
    dest = staging / f"{budget.files:06d}.dcm"
    too_big = f"file exceeds {MAX_MEMBER_BYTES // 1024**2} MiB"
    size = _copy(src, dest, name, budget, MAX_MEMBER_BYTES, too_big)
    yield StagedFile(name, dest, size)
