"""Resumable uploads: a file arrives in chunks into a session folder; a lost connection
resumes at the offset the server reports. Sessions live on the storage volume (no DB rows)
and expire after ``SESSION_TTL``.
"""

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
from pulmogate.api.uploads.unpack import MAX_TOTAL_BYTES
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
    return storage.root / "uploads-staging" / "sessions"


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


def open_session(storage: Storage, filename: str, size: int, user: str) -> SessionMeta:
    """A new empty session for one file of ``size`` bytes."""
    if size > MAX_TOTAL_BYTES:
        raise TooLarge(
            f"{filename}: {size} bytes is over the {MAX_TOTAL_BYTES // 1024**2} MiB limit"
        )
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


def append(storage: Storage, meta: SessionMeta, offset: int, chunk: bytes) -> int:
    """Append ``chunk`` at ``offset`` (must equal what was received); return the new offset."""
    path = _folder(storage, meta.id) / DATA
    have = path.stat().st_size
    if offset != have:
        raise Conflict(
            f"upload session {meta.id} has {have} bytes: send the chunk at offset {have}"
        )
    if have + len(chunk) > meta.size:
        raise TooLarge(f"{meta.filename}: more than the {meta.size} bytes declared")
    with path.open("ab") as out:
        out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return have + len(chunk)


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
