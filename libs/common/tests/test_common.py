"""UIDs, storage paths, atomic writes and PHI-free logs."""

import json
import logging
from pathlib import Path

import pytest
import structlog

from pulmogate.common.logging import configure_logging
from pulmogate.common.storage import Storage, UnsafeName, atomic_write
from pulmogate.common.uids import derive_uid, is_valid_uid


def test_derived_uids_are_stable_valid_and_distinct() -> None:
    a = derive_uid("1.2.3", "qct-1.0", "overlay", 1)
    assert a == derive_uid("1.2.3", "qct-1.0", "overlay", 1)
    assert a != derive_uid("1.2.3", "qct-1.0", "overlay", 2)
    assert is_valid_uid(a) and a.startswith("2.25.")


@pytest.mark.parametrize("uid", ["../../etc", "1.2/3", "1.2.3\\x", "", "01.2", "1." * 40])
def test_path_like_uids_never_become_paths(tmp_path, uid: str) -> None:
    with pytest.raises(UnsafeName):
        Storage(tmp_path).instance_path("1.2", "1.3", uid)


def test_atomic_write_leaves_the_whole_file_and_no_temp(tmp_path) -> None:
    target = tmp_path / "a" / "b.dcm"
    atomic_write(target, b"x" * 1000)
    assert target.read_bytes() == b"x" * 1000
    assert [p.name for p in target.parent.iterdir()] == ["b.dcm"]


def test_patient_identifiers_never_reach_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json", service="test")
    structlog.get_logger("t").info("stored", patient_name="DOE^JANE", PatientID="X123", job_id=4)
    logging.getLogger("std").info("plain line")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    text = json.dumps(lines)
    assert "DOE^JANE" not in text and "X123" not in text
    assert any(line.get("job_id") == 4 for line in lines)


def test_storage_remove_deletes_empty_folders_and_nothing_outside(tmp_path: Path) -> None:
    from pulmogate.common.storage import Storage

    storage = Storage(tmp_path / "storage")
    kept = storage.instance_path("1.2.3", "1.2.3.4", "1.2.3.4.5")
    gone = storage.instance_path("1.2.9", "1.2.9.4", "1.2.9.4.5")
    outside = tmp_path / "elsewhere.dcm"
    for path in (kept, gone, outside):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")

    assert storage.remove(gone) is True
    assert storage.remove(storage.root / ".." / "elsewhere.dcm") is False

    assert not gone.exists() and not gone.parent.parent.exists()
    assert kept.exists() and outside.exists() and (storage.incoming_folder()).is_dir()


def test_storage_lays_out_every_folder_under_its_root_and_removes_a_jobs_results(
    tmp_path: Path,
) -> None:
    storage = Storage(tmp_path)
    assert storage.incoming_folder() == tmp_path / "incoming"
    assert storage.results_folder(7) == tmp_path / "results" / "7"
    assert storage.staging_folder() == tmp_path / "uploads-staging"
    assert storage.upload_sessions_folder() == tmp_path / "uploads-staging" / "sessions"
    assert storage.markers_folder() == tmp_path / "receiving"
    assert storage.result_path(7, "seg", "1.2.3").parent == tmp_path / "results" / "7" / "seg"
    for job in (7, 8):
        path = storage.result_path(job, "overlay", "1.2.3", "jpeg")
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")

    storage.remove_results(7)
    storage.remove_results(9)  # never stored: nothing to do

    assert not storage.results_folder(7).exists() and storage.results_folder(8).is_dir()
