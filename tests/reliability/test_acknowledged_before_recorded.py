"""The fsynced file is the point of acknowledgement: a receiver SIGKILLed after answering
success but before the instance's rows were committed rebuilds them from the files at start.

The receiver runs as a real ``pulmogate receiver`` process, on the embedded SQLite file and on
Postgres. ``PULMOGATE_RECEIVER_GROUP_INTERVAL_S`` is set long (3 s) so that the kill, right
after the last success, certainly falls between acknowledgements and their commit; the test
checks that it did (no row yet), then that the restarted process has every acknowledged
instance with its row and file before anything is sent again, with the series and its peer as
a commit would have written them.
"""

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from pulmogate.tools.phantom import make_phantom, write_series
from tests.fixtures.gateway import PULMOGATE
from tests.fixtures.infra import free_port, wait_for_echo
from tests.reliability.faults import sql, sqlite_rows, wait_until
from tests.reliability.scu import send_series, sop_uid

pytestmark = pytest.mark.e2e

SLICES = 12
CALLING = "CT_KILLED"


@contextmanager
def receiver_process(
    data_dir: Path, database_url: str
) -> Iterator[Callable[[], tuple[int, subprocess.Popen[bytes]]]]:
    """``pulmogate receiver`` alone; yields ``start()`` which (re)starts it on the same port
    and returns the port and the process."""
    port = free_port()
    env = {
        **os.environ,
        "PULMOGATE_DATA_DIR": str(data_dir),
        "PULMOGATE_DATABASE_URL": database_url,
        "PULMOGATE_BROKER_URL": "memory://",
        "PULMOGATE_DICOM_HOST": "127.0.0.1",
        "PULMOGATE_DICOM_PORT": str(port),
        "PULMOGATE_ACCEPT_FROM": "any",
        "PULMOGATE_SERIES_QUIET_SECONDS": "1",
        "PULMOGATE_SERIES_IDLE_SECONDS": "4",
        "PULMOGATE_RECEIVER_GROUP_INTERVAL_S": "3",
        "PULMOGATE_LOG_LEVEL": "INFO",
    }
    subprocess.run([PULMOGATE, "db", "upgrade"], env=env, check=True, capture_output=True)
    procs: list[subprocess.Popen[bytes]] = []
    log = (data_dir.parent / "receiver.log").open("ab")

    def start() -> tuple[int, subprocess.Popen[bytes]]:
        proc = subprocess.Popen([PULMOGATE, "receiver"], env=env, stdout=log, stderr=log)
        procs.append(proc)
        wait_for_echo(port, proc, "receiver")
        return port, proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        log.close()


def rows(database_url: str, data_dir: Path, query: str) -> list[list[str]]:
    """One query on the receiver's database, as text."""
    if database_url:
        return sql(database_url, query)
    found = sqlite_rows(data_dir / "pulmogate.db", query)
    return [["" if v is None else str(v) for v in row] for row in found]


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    url: str = request.getfixturevalue("pg_url")
    return url


def test_instances_acknowledged_before_their_rows_are_recorded_on_restart(
    tmp_path: Path, database: str
) -> None:
    data_dir = tmp_path / "data"
    folder = tmp_path / "ct"
    write_series(make_phantom(slices=SLICES, size=64, seed=7), folder)
    files = sorted(folder.iterdir())
    series_uid = str(dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    with receiver_process(data_dir, database) as start:
        port, first = start()

        def kill_after_last(index: int, _status: int | None) -> bool:
            if index == len(files) - 1:
                first.send_signal(signal.SIGKILL)  # no shutdown code runs
            return False

        report = send_series(port, files, calling=CALLING, after_each=kill_after_last)
        assert report.acknowledged == {sop_uid(f) for f in files}, report.statuses
        first.wait(timeout=10)
        # The kill came between acknowledgement and commit: files, and no row yet.
        stored = {p.stem for p in (data_dir / "storage" / "incoming").rglob("*.dcm")}
        assert stored == report.acknowledged
        before = rows(database, data_dir, "SELECT count(*) FROM instances")
        assert before == [["0"]], before
        assert list((data_dir / "storage" / "receiving").iterdir())

        # A partial write that was never acknowledged (what a kill mid-write leaves; made by
        # hand, the kill cannot be timed to land inside one write).
        series_folder = next((data_dir / "storage" / "incoming").rglob("*.dcm")).parent
        (series_folder / ".tmp-partial").write_bytes(b"\x00" * 100)
        # A file another writer left in the folder (an upload that stopped before its
        # commit): not the receiver's, so not its to record.
        foreign = dcmread(files[0])
        foreign.SOPInstanceUID = foreign.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        foreign.save_as(series_folder / f"{foreign.SOPInstanceUID}.dcm")

        start()
        recovered = rows(
            database,
            data_dir,
            "SELECT i.sop_instance_uid FROM instances i JOIN series s ON s.id = i.series_id "
            f"WHERE s.series_uid = '{series_uid}'",
        )
        assert {r[0] for r in recovered} == report.acknowledged
        assert len(recovered) == SLICES
        series = rows(
            database,
            data_dir,
            "SELECT status, instance_count, calling_ae, called_ae, peer_ip, "
            "interrupted_at IS NOT NULL FROM series "
            f"WHERE series_uid = '{series_uid}'",
        )
        assert series[0][:5] == ["receiving", str(SLICES), CALLING, "PULMOGATE", "127.0.0.1"]
        assert series[0][5] in {"1", "t", "True"}, series
        assert not (series_folder / ".tmp-partial").exists()
        assert (series_folder / f"{foreign.SOPInstanceUID}.dcm").exists()
        assert not list((data_dir / "storage" / "receiving").iterdir())

        # Interrupted: announced after the idle time, with every acknowledged instance.
        def announced() -> bool:
            status = rows(
                database, data_dir, f"SELECT status FROM series WHERE series_uid = '{series_uid}'"
            )
            return status == [["complete"]]

        wait_until(announced, 30, "the recovered series to be announced", step=0.2)
        staged = rows(
            database,
            data_dir,
            "SELECT count(*) FROM outbox WHERE routing_key = 'series.arrived'",
        )
        assert staged == [["1"]]

        # The PACS saw no failure but may resend: nothing is stored twice.
        again = send_series(port, files, calling=CALLING)
        assert again.acknowledged == report.acknowledged
        time.sleep(0.5)
        wait_until(
            lambda: rows(database, data_dir, "SELECT count(*) FROM instances") == [[str(SLICES)]],
            10,
            "the resend to be recorded",
        )
