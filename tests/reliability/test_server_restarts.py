"""Real server restarts during a run: the five ``pulmogate`` processes run on a private
RabbitMQ node and a private PostgreSQL cluster (tests/fixtures/private_servers.py), which
the tests stop and start again while series are received, analysed and delivered.

The crash tests (test_crash_recovery.py) only cut connections on the shared servers; here
the broker loses its connections, channels and consumers and recovers its durable queues
from disk, and the database refuses connections while it is down. The checks are the
same: every acknowledged instance is on disk and in the DB, every job ends done, the
destination holds each output once, nothing is stuck.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.datasets import series_uid_of
from tests.fixtures.gateway import Gateway
from tests.fixtures.private_servers import (
    PrivatePostgres,
    PrivateRabbitMQ,
    private_postgres,
    private_rabbitmq,
)
from tests.reliability.faults import held_messages, sql, wait_until
from tests.reliability.recording_scp import RecordingSCP, gateway_recorded_by
from tests.reliability.scu import send_series, sop_uid
from tests.reliability.test_crash_recovery import (
    ENV,
    SERVICES,
    SLICES,
    assert_delivered_once,
    assert_nothing_stuck,
    assert_stored,
    job_status,
    new_series,
    wait_final_job,
)

__all__ = ["private_postgres", "private_rabbitmq"]

pytestmark = pytest.mark.e2e

PROCESSING_FAILURE = 0x0110


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    private_postgres: PrivatePostgres,
    private_rabbitmq: PrivateRabbitMQ,
    destination: RecordingSCP,
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("gateway")
    urls = {"database_url": private_postgres.url, "broker_url": private_rabbitmq.url}
    with gateway_recorded_by(destination, tmp, SERVICES, **urls, extra_env=ENV) as gw:
        yield gw


def queue_depths(broker: PrivateRabbitMQ) -> dict[str, int]:
    """Queues of the private node that hold messages (ready or unacked), delay queues aside."""
    return held_messages(broker.ctl("list_queues", "-q", "--no-table-headers", "name", "messages"))


def test_rabbitmq_restarted_mid_analysis_and_mid_delivery_loses_and_duplicates_nothing(
    gateway: Gateway,
    destination: RecordingSCP,
    private_postgres: PrivatePostgres,
    private_rabbitmq: PrivateRabbitMQ,
    tmp_path: Path,
) -> None:
    files = new_series(tmp_path)
    series_uid = series_uid_of(files)
    report = send_series(gateway.dicom_port, files)
    assert report.acknowledged == {sop_uid(f) for f in files}

    # Restart 1: inference holds the unacked ``analysis.requested`` of a running analysis.
    wait_until(
        lambda: job_status(private_postgres.url, series_uid) == "analysing", 60, "the analysis"
    )
    private_rabbitmq.restart()

    # Restart 2: the sender is in the middle of its association with the destination.
    before = len(destination.requests)
    with destination.slowed(0.2):
        destination.wait_for_more_than(before + 2, 90)
        private_rabbitmq.restart()

    job = wait_final_job(gateway, series_uid)
    assert job["attempts"] == 1, "the job was analysed twice"
    assert_stored(gateway, private_postgres.url, series_uid, report.acknowledged)
    assert_delivered_once(job, destination)


def test_rabbitmq_restarted_while_a_series_is_announced_publishes_it_after_restart(
    gateway: Gateway,
    destination: RecordingSCP,
    private_postgres: PrivatePostgres,
    private_rabbitmq: PrivateRabbitMQ,
    tmp_path: Path,
) -> None:
    """The broker is down when the quiet period ends: ``series.arrived`` waits in the
    receiver's outbox and goes out once the broker is back."""
    files = new_series(tmp_path)
    series_uid = series_uid_of(files)
    private_rabbitmq.stop()
    try:
        report = send_series(gateway.dicom_port, files)
        wait_until(
            lambda: (
                sql(
                    private_postgres.url,
                    f"SELECT status FROM series WHERE series_uid = '{series_uid}'",
                )
                == [["complete"]]
            ),
            30,
            "the series to be announced",
        )
    finally:
        private_rabbitmq.start()
    assert report.acknowledged == {sop_uid(f) for f in files}
    job = wait_final_job(gateway, series_uid)
    assert_stored(gateway, private_postgres.url, series_uid, report.acknowledged)
    assert_delivered_once(job, destination)


def test_postgres_restarted_mid_association_and_mid_analysis_loses_and_duplicates_nothing(
    gateway: Gateway,
    destination: RecordingSCP,
    private_postgres: PrivatePostgres,
    tmp_path: Path,
) -> None:
    files = new_series(tmp_path)
    series_uid = series_uid_of(files)
    restarts_before = private_postgres.restarts
    down_from, up_after = SLICES // 2, SLICES // 2 + 5

    def fault(index: int, _status: int | None) -> bool:
        if index == down_from:
            private_postgres.stop()
        elif index == up_after:
            private_postgres.start()
            private_postgres.restarts += 1
        return False

    # Restart 1, mid-association: the instances that arrive while the server is down are
    # answered 0x0110 "could not record instance" (never success); the PACS resends them.
    report = send_series(gateway.dicom_port, files, after_each=fault)
    refused = [f for f in files if sop_uid(f) not in report.acknowledged]
    assert refused, "no instance arrived while the database was down"
    assert all(report.statuses[sop_uid(f)] == PROCESSING_FAILURE for f in refused), report.statuses
    assert_stored(gateway, private_postgres.url, series_uid, report.acknowledged)
    resent = send_series(gateway.dicom_port, refused)
    assert resent.acknowledged == {sop_uid(f) for f in refused}

    # Restart 2: while the job is analysed (inference commits its results afterwards).
    wait_until(
        lambda: job_status(private_postgres.url, series_uid) == "analysing", 60, "the analysis"
    )
    private_postgres.restart(down_s=1.0)
    assert private_postgres.restarts == restarts_before + 2

    job = wait_final_job(gateway, series_uid)
    assert_stored(gateway, private_postgres.url, series_uid, {sop_uid(f) for f in files})
    assert_delivered_once(job, destination)


def test_after_the_restarts_nothing_is_stuck(
    gateway: Gateway, private_postgres: PrivatePostgres, private_rabbitmq: PrivateRabbitMQ
) -> None:
    """Runs after the restart tests: every job and delivery final, every series announced,
    the outbox drained, no message waiting or parked."""
    assert private_rabbitmq.restarts >= 2 and private_postgres.restarts >= 2
    time.sleep(2)  # let the last outbox round and the last acks land
    url = private_postgres.url
    assert sql(url, "SELECT count(*) FROM jobs") == [["3"]]
    assert_nothing_stuck(gateway, url)
    assert queue_depths(private_rabbitmq) == {}
    gateway.assert_alive()
