"""File storage with durable, atomic writes (temp file, fsync, rename, fsync dir)."""

import os
import re
import shutil
import tempfile
from pathlib import Path

from pydicom import Dataset

from pulmogate.common.uids import is_valid_uid

_ENCODING_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")


class UnsafeName(ValueError):
    """A UID that cannot safely become part of a path."""


def _safe(uid: str) -> str:
    if not is_valid_uid(uid):
        raise UnsafeName(f"not a valid DICOM UID: {uid[:80]!r}")
    return uid


TEMP_PREFIX = ".tmp-"


def fsync_folder(folder: Path) -> None:
    """Make the entries of ``folder`` (a file created, renamed or removed in it) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folders(folder: Path) -> None:
    """``mkdir -p`` whose new folders survive a crash: each one's parent is fsynced."""
    if folder.is_dir():
        return
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        # A concurrent writer may have made it and not fsynced its parent yet: fsync anyway.
        created.mkdir(exist_ok=True)
        fsync_folder(created.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` holds either nothing or all of it, durably."""
    make_folders(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def move_durably(moves: list[tuple[Path, Path]]) -> None:
    """Rename each fsynced file to its path (folders made as ``make_folders`` does), then make
    the renames durable: each destination folder fsynced once."""
    for source, path in moves:
        make_folders(path.parent)
        os.replace(source, path)
    for folder in {path.parent for _, path in moves}:
        fsync_folder(folder)


def dataset_bytes(ds: Dataset) -> bytes:
    """Serialise a dataset with its file meta (DICOM Part 10)."""
    from io import BytesIO

    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class Storage:
    """Every path under the storage root: received instances (``incoming``), results
    (``results/<job>``), uploads being staged (``uploads-staging``) and the receiver's marks
    of the series it is writing (``receiving``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def incoming_folder(self) -> Path:
        """Where received instances live (``incoming/<study>/<series>/<sop>.dcm``)."""
        return self.root / "incoming"

    def instance_path(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        """Path of a received instance; UIDs are validated so nothing escapes the root."""
        return (
            self.incoming_folder() / _safe(study_uid) / _safe(series_uid) / f"{_safe(sop_uid)}.dcm"
        )

    def results_folder(self, job_id: int) -> Path:
        """The folder of one job's result objects."""
        return self.root / "results" / str(int(job_id))

    def remove_results(self, job_id: int) -> None:
        """Delete whatever is left of one job's results folder (nothing when there is none)."""
        shutil.rmtree(self.results_folder(job_id), ignore_errors=True)

    def staging_folder(self) -> Path:
        """Where uploads are staged before their files move into ``incoming`` (same volume,
        so the move is a rename)."""
        return self.root / "uploads-staging"

    def upload_sessions_folder(self) -> Path:
        """Where resumable upload sessions keep their parts (inside the staging folder)."""
        return self.staging_folder() / "sessions"

    def markers_folder(self) -> Path:
        """Where the receiver marks the series it is writing into (recovery looks there)."""
        return self.root / "receiving"

    def result_path(
        self, job_id: int, kind: str, sop_uid: str, encoding: str | None = None
    ) -> Path:
        """Path of a result object of a job: its primary file, or with ``encoding`` the copy
        stored in that encoding (``results/<job>/<kind>/<encoding>/<uid>.dcm``)."""
        if not kind.isalnum():
            raise UnsafeName(f"bad output kind {kind!r}")
        folder = self.results_folder(job_id) / kind
        if encoding is not None:
            if not _ENCODING_NAME.fullmatch(encoding):
                raise UnsafeName(f"bad encoding name {encoding!r}")
            folder = folder / encoding
        return folder / f"{_safe(sop_uid)}.dcm"

    def remove(self, path: Path) -> bool:
        """Delete a stored file and the folders it leaves empty, never anything outside the
        root; False (and nothing deleted) for a path outside it."""
        root = self.root.resolve()
        try:
            resolved = path.resolve()
        except OSError:
            return False
        if root not in resolved.parents:
            return False
        resolved.unlink(missing_ok=True)
        parent = resolved.parent
        while parent != root and root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return True

    def free_percent(self) -> float:
        """Free space on the storage volume, in percent."""
        self.root.mkdir(parents=True, exist_ok=True)
        st = os.statvfs(self.root)
        return 100.0 * st.f_bavail / st.f_blocks if st.f_blocks else 100.0
