"""Resumable uploads: a file arrives in chunks into a session folder; a lost connection
resumes at the offset the server reports. Sessions live on the storage volume (no DB rows)
and expire after ``SESSION_TTL``.
"""

import fcntl
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from pulmogate.api.errors import ApiError, Conflict, NotFound
from pulmogate.api.uploads.ingest import StorageFull
from pulmogate.common.disk import DISK_FULL_ERRNOS
from pulmogate.common.storage import Storage

SESSION_TTL_S = 24 * 3600
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
DATA, META = "data", "meta.json"


class TooLarge(ApiError):
    """More bytes than the session declared, or a declared size over the limit (413)."""

    status_code = 413


@dataclass
class SessionMeta:
    """What the client declared when it opened the session."""

    id: str
    filename: str
    size: int
    user: str
    created: float


def sessions_root(storage: Storage) -> Path:
    """Where sessions live (on the storage volume, so finishing moves, not copies)."""
    return storage.upload_sessions_folder()


def _folder(storage: Storage, session_id: str) -> Path:
    if not SESSION_ID.match(session_id):
        raise NotFound(f"upload session {session_id[:40]!r} not found")
    return sessions_root(storage) / session_id


def expire(storage: Storage, now: float | None = None) -> int:
    """Delete sessions older than ``SESSION_TTL_S``; return how many."""
    now = now or time.time()
    removed = 0
    root = sessions_root(storage)
    for folder in root.iterdir() if root.is_dir() else []:
        meta = folder / META
        try:
            created = json.loads(meta.read_text())["created"]
        except (OSError, ValueError, KeyError):
            created = folder.stat().st_mtime
        if now - created > SESSION_TTL_S:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def check_declared_size(filename: str, size: int, max_bytes: int) -> None:
    """413 for a file larger than an upload may be."""
    if size > max_bytes:
        raise TooLarge(f"{filename}: {size} bytes is over the {max_bytes / 1024**2:g} MiB limit")


def open_session(
    storage: Storage, filename: str, size: int, user: str, *, max_bytes: int
) -> SessionMeta:
    """A new empty session for one file of ``size`` bytes (at most ``max_bytes``)."""
    check_declared_size(filename, size, max_bytes)
    expire(storage)
    meta = SessionMeta(uuid.uuid4().hex, filename, size, user, time.time())
    folder = _folder(storage, meta.id)
    folder.mkdir(parents=True)
    (folder / DATA).touch()
    (folder / META).write_text(json.dumps(asdict(meta)))
    return meta


def load(storage: Storage, session_id: str, user: str, *, admin: bool = False) -> SessionMeta:
    """The session's declaration (only its owner, or an admin, may see it)."""
    folder = _folder(storage, session_id)
    try:
        meta = SessionMeta(**json.loads((folder / META).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise NotFound(f"upload session {session_id} not found (or expired)") from exc
    if meta.user != user and not admin:
        raise NotFound(f"upload session {session_id} not found (or expired)")
    return meta


def received(storage: Storage, session_id: str) -> int:
    """Bytes received so far: the offset the next chunk must start at."""
    return (_folder(storage, session_id) / DATA).stat().st_size


class ChunkWriter:
    """Appends one chunk at ``offset`` under an exclusive lock on the session's file.

    Blocking: call each method in a thread. A chunk that fails (too long, disk full, the
    connection lost) is cut off again, so the session's offset stays where it was.
    """

    def __init__(self, storage: Storage, meta: SessionMeta, offset: int) -> None:
        self.meta = meta
        path = _folder(storage, meta.id) / DATA
        self.out = path.open("r+b")
        try:
            fcntl.flock(self.out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self.out.close()
            raise Conflict(
                f"upload session {meta.id}: another chunk is being written; "
                "ask for the offset and send the next chunk after it"
            ) from exc
        self.start = os.fstat(self.out.fileno()).st_size
        if offset != self.start:
            self.out.close()
            raise Conflict(
                f"upload session {meta.id} has {self.start} bytes: "
                f"send the chunk at offset {self.start}"
            )
        self.out.seek(self.start)
        self.written = 0

    def _full(self, exc: OSError) -> Exception:
        if exc.errno in DISK_FULL_ERRNOS:
            return StorageFull(
                f"chunk refused: storage full (no space left on the device); upload session "
                f"{self.meta.id} keeps {self.start} bytes: resume at that offset once space is free"
            )
        return exc

    def write(self, data: bytes) -> None:
        """Append ``data``; more than the declared size is refused (413)."""
        if self.start + self.written + len(data) > self.meta.size:
            raise TooLarge(f"{self.meta.filename}: more than the {self.meta.size} bytes declared")
        try:
            self.out.write(data)
        except OSError as exc:
            raise self._full(exc) from exc
        self.written += len(data)

    def commit(self) -> int:
        """Make the chunk durable; the new offset."""
        try:
            self.out.flush()
            os.fsync(self.out.fileno())
        except OSError as exc:
            raise self._full(exc) from exc
        self.out.close()
        return self.start + self.written

    def abort(self) -> None:
        """Cut the file back to where the chunk started and release the lock."""
        if self.out.closed:
            return
        try:
            self.out.truncate(self.start)
        except OSError:
            pass
        finally:
            self.out.close()


def complete_file(storage: Storage, meta: SessionMeta) -> IO[bytes]:
    """The finished file, open for reading; Conflict while bytes are missing."""
    have = received(storage, meta.id)
    if have != meta.size:
        raise Conflict(
            f"upload session {meta.id} ({meta.filename}) has {have} of {meta.size} bytes"
        )
    return (_folder(storage, meta.id) / DATA).open("rb")


def close(storage: Storage, session_id: str) -> None:
    """Forget a session and its bytes."""
    shutil.rmtree(_folder(storage, session_id), ignore_errors=True)
