"""Crash recovery on the distributed deployment: five ``pulmogate`` processes on real
Postgres and RabbitMQ; each test SIGKILLs one service at a chosen point (or cuts the
broker's or the database's connections), restarts it, and checks that nothing
acknowledged is lost, every job ends final and the destination keeps one copy of each
output.

The destination is a recording SCP (tests/reliability/recording_scp.py) that counts every
C-STORE request; the modality is pynetdicom (tests/reliability/scu.py) so each instance's
status is known.
"""

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.datasets import phantom_series, series_uid_of
from tests.fixtures.gateway import Gateway
from tests.fixtures.log_search import appears
from tests.reliability.faults import (
    close_vhost_connections,
    kill,
    publishing_only,
    queue_depths,
    restart,
    sql,
    terminate_db_sessions,
    wait_echo,
    wait_until,
)
from tests.reliability.recording_scp import RecordingSCP, gateway_recorded_by
from tests.reliability.scu import send_series, sop_uid

pytestmark = pytest.mark.e2e

SERVICES = [["receiver"], ["router"], ["inference"], ["sender"], ["api"]]
SLICES = 40
SIZE = 128
PATIENT_NAME = "PHANTOM^RELIABILITY"
PATIENT_ID = "PGREL-7731-XQ"
ENV = {
    "PULMOGATE_MIN_SLICES": "16",
    "PULMOGATE_DELIVERY_BACKOFF_INITIAL_S": "1",
    # A series cut off by a receiver restart waits this long for the rest.
    "PULMOGATE_SERIES_IDLE_SECONDS": "8",
}


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, pg_url: str, amqp_url: str, destination: RecordingSCP
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("gateway")
    urls = {"database_url": pg_url, "broker_url": amqp_url}
    with gateway_recorded_by(destination, tmp, SERVICES, **urls, extra_env=ENV) as gw:
        yield gw


_seed = iter(range(100, 1000))


def new_series(tmp_path: Path) -> list[Path]:
    """A fresh small chest CT series (new study and series UIDs) with distinctive PHI."""
    return phantom_series(
        tmp_path,
        next(_seed),
        slices=SLICES,
        size=SIZE,
        pixel_spacing_mm=2.8,
        slice_thickness_mm=2.5,
        patient_name=PATIENT_NAME,
        patient_id=PATIENT_ID,
    )


def jobs_of(gw: Gateway, series_uid: str) -> list[dict[str, Any]]:
    with gw.client() as client:
        items = client.get("/api/v1/jobs", params={"limit": 100}).json()["items"]
    return [j for j in items if j["series_uid"] == series_uid]


def wait_final_job(gw: Gateway, series_uid: str, timeout: float = 120.0) -> dict[str, Any]:
    """Wait for the series' job(s) to be final; return the job's detail."""
    jobs = gw.wait_for_job(
        lambda items: (
            [j for j in items if j["series_uid"] == series_uid]
            and all(
                j["status"] in {"done", "failed", "rejected", "ignored"}
                for j in items
                if j["series_uid"] == series_uid
            )
        ),
        timeout=timeout,
    )
    mine = [j for j in jobs if j["series_uid"] == series_uid]
    assert len(mine) == 1, f"expected exactly one job for the series: {mine}"
    with gw.client() as client:
        detail: dict[str, Any] = client.get(f"/api/v1/jobs/{mine[0]['id']}").json()
    return detail


def assert_stored(gw: Gateway, pg_url: str, series_uid: str, acknowledged: set[str]) -> None:
    """Every acknowledged instance has its row and its file. The rows follow the answer in
    groups (a fraction of a second): allowed a few seconds to appear, never more."""
    deadline = time.monotonic() + 5
    while True:
        try:
            _assert_stored_now(pg_url, series_uid, acknowledged)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _assert_stored_now(pg_url: str, series_uid: str, acknowledged: set[str]) -> None:
    rows = sql(
        pg_url,
        "SELECT i.sop_instance_uid, i.path FROM instances i JOIN series s ON s.id = i.series_id "
        f"WHERE s.series_uid = '{series_uid}'",
    )
    stored = {uid: Path(path) for uid, path in rows}
    assert acknowledged <= set(stored), f"lost: {sorted(acknowledged - set(stored))}"
    missing = [uid for uid in acknowledged if not stored[uid].is_file()]
    assert not missing, f"rows without files: {missing}"
    assert len(rows) == len(stored), "an instance has two rows"


def job_status(pg_url: str, series_uid: str) -> str | None:
    rows = sql(
        pg_url,
        "SELECT j.status FROM jobs j JOIN series s ON s.id = j.series_id "
        f"WHERE s.series_uid = '{series_uid}'",
    )
    return rows[0][0] if rows else None


def assert_delivered_once(
    job: dict[str, Any], destination: RecordingSCP, *, resend_allowed: bool = False
) -> None:
    """The job is done and the destination holds each output exactly once."""
    assert job["status"] == "done", job
    assert [d["status"] for d in job["deliveries"]] == ["delivered"], job["deliveries"]
    outputs = {o["sop_instance_uid"] for o in job["outputs"]}
    assert outputs and len(outputs) == len(job["outputs"]), job["outputs"]
    assert set(destination.kept) >= outputs
    received = destination.received(outputs)
    assert set(received) == outputs
    if not resend_allowed:
        assert not destination.duplicates(outputs), destination.duplicates(outputs)


def assert_nothing_stuck(gw: Gateway, pg_url: str) -> None:
    """Every job done, every delivery delivered, every series announced, the outbox
    drained, no message parked."""
    assert sql(pg_url, "SELECT status FROM jobs WHERE status NOT IN ('done')") == []
    assert sql(pg_url, "SELECT status FROM deliveries WHERE status <> 'delivered'") == []
    assert sql(pg_url, "SELECT status FROM series WHERE status = 'receiving'") == []
    assert sql(pg_url, "SELECT id FROM outbox WHERE published_at IS NULL") == []
    with gw.client() as client:
        parked = client.get("/api/v1/dead-letters")
    assert parked.status_code == 200 and parked.json() == [], parked.text


def test_receiver_killed_mid_association_loses_no_acknowledged_instance(
    gateway: Gateway, destination: RecordingSCP, pg_url: str, tmp_path: Path
) -> None:
    files = new_series(tmp_path)
    series_uid = series_uid_of(files)
    kill_after = SLICES // 2

    def fault(index: int, status: int | None) -> bool:
        if index == kill_after:
            kill(gateway, "receiver")
        return index > kill_after

    first = send_series(gateway.dicom_port, files, after_each=fault)
    assert len(first.acknowledged) == kill_after + 1, first.statuses
    # Acknowledged means durable on disk; the rows of the last ones may not be committed
    # yet (they follow in groups) and are rebuilt from the files at the restart.
    on_disk = {p.stem for p in (gateway.data_dir / "storage" / "incoming").rglob("*.dcm")}
    assert first.acknowledged <= on_disk, sorted(first.acknowledged - on_disk)

    restart(gateway, "receiver")
    wait_echo(gateway)
    assert_stored(gateway, pg_url, series_uid, first.acknowledged)
    # The PACS saw a broken association and resends the whole series.
    second = send_series(gateway.dicom_port, files)
    assert second.acknowledged == {sop_uid(f) for f in files}
    job = wait_final_job(gateway, series_uid)
    assert_stored(gateway, pg_url, series_uid, second.acknowledged)
    assert_delivered_once(job, destination)
    # The part received before the kill was not analysed as if it were the series.
    assert (job["analysed_instance_count"], job["attempts"]) == (SLICES, 1)


def test_receiver_killed_after_the_last_response_before_announcing_completes_on_restart(
    gateway: Gateway, destination: RecordingSCP, pg_url: str, tmp_path: Path
) -> None:
    files = new_series(tmp_path)
    series_uid = series_uid_of(files)
    # Keep the association open after the last response so completion cannot run yet.

    def fault(index: int, _status: int | None) -> bool:
        if index == len(files) - 1:
            kill(gateway, "receiver")
        return False

    report = send_series(gateway.dicom_port, files, after_each=fault)
    assert len(report.acknowledged) == SLICES
    status = sql(pg_url, f"SELECT status FROM series WHERE series_uid = '{series_uid}'")
    # Rows follow the answers in groups: none committed yet is possible (recovered at start).
    assert status in ([["receiving"]], []), status
    restart(gateway, "receiver")
    wait_echo(gateway)
    # Cut off with its association open: announced after series_idle_seconds (8 s here).
    job = wait_final_job(gateway, series_uid)
    assert_stored(gateway, pg_url, series_uid, report.acknowledged)
    assert_delivered_once(job, destination)
    with gateway.client() as client:
        log = [line["message"] for line in client.get(f"/api/v1/jobs/{job['id']}/log").json()]
    assert any("cut off by a restart of the gateway" in line for line in log), log


def test_router_killed_between_commit_and_publish_publishes_on_restart(
    gateway: Gateway, destination: RecordingSCP, pg_url: str, amqp_url: str, tmp_path: Path
) -> None:
    """The job and its ``analysis.requested`` outbox row are committed, the publish is
    refused by the broker (topic permission), the router is killed: the restarted
    router's outbox relay publishes the row and the job completes."""
    files = new_series(tmp_path)
    series_uid = series_uid_of(files)
    kill(gateway, "router")
    send_series(gateway.dicom_port, files)
    wait_until(
        lambda: (
            sql(pg_url, f"SELECT status FROM series WHERE series_uid = '{series_uid}'")
            == [["complete"]]
        ),
        30,
        "the series to be announced",
    )
    router_log = gateway.log_dir / "router.log"
    refused_before = router_log.read_text().count("outbox publish failed")
    with publishing_only(amqp_url, r"^series\.arrived$"):
        restart(gateway, "router")

        def committed_not_published() -> bool:
            return bool(
                sql(
                    pg_url,
                    "SELECT o.id FROM outbox o WHERE o.routing_key = 'analysis.requested' "
                    "AND o.published_at IS NULL AND EXISTS (SELECT 1 FROM jobs j JOIN series s "
                    f"ON s.id = j.series_id WHERE s.series_uid = '{series_uid}')",
                )
            )

        wait_until(committed_not_published, 60, "the job committed with its event unpublished")
        wait_until(
            lambda: router_log.read_text().count("outbox publish failed") > refused_before,
            30,
            "the refused publish",
        )
        kill(gateway, "router")
    restart(gateway, "router")
    job = wait_final_job(gateway, series_uid)
    assert_delivered_once(job, destination)


def test_inference_killed_mid_analysis_is_analysed_again_and_delivered_once(
    gateway: Gateway, destination: RecordingSCP, pg_url: str, tmp_path: Path
) -> None:
    files = new_series(tmp_path)
    series_uid = series_uid_of(files)
    send_series(gateway.dicom_port, files)

    wait_until(lambda: job_status(pg_url, series_uid) == "analysing", 60, "the analysis", step=0.02)
    kill(gateway, "inference")
    restart(gateway, "inference")
    job = wait_final_job(gateway, series_uid)
    assert job["attempts"] == 2, job["attempts"]
    assert_delivered_once(job, destination)
    with gateway.client() as client:
        log = [line["message"] for line in client.get(f"/api/v1/jobs/{job['id']}/log").json()]
    taken_over = [line for line in log if "interrupted" in line]
    assert len(taken_over) == 1, log


def test_broker_connection_lost_mid_analysis_starts_no_second_analysis(
    gateway: Gateway, destination: RecordingSCP, pg_url: str, amqp_url: str, tmp_path: Path
) -> None:
    """Inference is frozen (SIGSTOP) while analysing, so the broker closes its connection
    for certain before the analysis ends; after SIGCONT the redelivered request waits for
    the running analysis instead of starting a second one."""
    files = new_series(tmp_path)
    series_uid = series_uid_of(files)
    send_series(gateway.dicom_port, files)
    wait_until(lambda: job_status(pg_url, series_uid) == "analysing", 60, "the analysis")
    inference = gateway.processes["inference"]
    inference.send_signal(signal.SIGSTOP)
    try:
        assert close_vhost_connections(amqp_url) >= 4
    finally:
        inference.send_signal(signal.SIGCONT)
    job = wait_final_job(gateway, series_uid)
    assert job["attempts"] == 1, "the job was analysed twice"
    assert_delivered_once(job, destination)


def test_sender_killed_mid_association_resends_and_the_destination_keeps_one_copy(
    gateway: Gateway, destination: RecordingSCP, pg_url: str, tmp_path: Path
) -> None:
    files = new_series(tmp_path)
    series_uid = series_uid_of(files)
    before = len(destination.requests)
    with destination.slowed(0.2):
        send_series(gateway.dicom_port, files)
        destination.wait_for_more_than(before + 2, 90)
        kill(gateway, "sender")
    restart(gateway, "sender")
    job = wait_final_job(gateway, series_uid)
    # At-least-once: the interrupted association is sent again in full; the SOP Instance
    # UIDs are the same, so the PACS keeps one copy of each object.
    assert_delivered_once(job, destination, resend_allowed=True)
    outputs = {o["sop_instance_uid"] for o in job["outputs"]}
    assert destination.duplicates(outputs), "the kill should have interrupted a delivery"
    assert max(destination.duplicates(outputs).values()) == 2


def test_sender_stopped_mid_association_finishes_it_before_exiting(
    gateway: Gateway, destination: RecordingSCP, tmp_path: Path
) -> None:
    """SIGTERM (a deploy, a scale-down): the association in progress completes and is
    recorded, so nothing is sent twice after the restart."""
    files = new_series(tmp_path)
    series_uid = series_uid_of(files)
    before = len(destination.requests)
    with destination.slowed(0.1):
        send_series(gateway.dicom_port, files)
        destination.wait_for_more_than(before + 2, 90)
        sender = gateway.processes["sender"]
        sender.send_signal(signal.SIGTERM)
        assert sender.wait(timeout=30) == 0
    restart(gateway, "sender")
    job = wait_final_job(gateway, series_uid)
    assert_delivered_once(job, destination)


def test_broker_connections_cut_while_announcing_and_while_sending_lose_and_duplicate_nothing(
    gateway: Gateway, destination: RecordingSCP, amqp_url: str, tmp_path: Path
) -> None:
    files = new_series(tmp_path)
    series_uid = series_uid_of(files)
    before = len(destination.requests)
    send_series(gateway.dicom_port, files)
    # Cut 1: the series is about to be announced (quiet period of 1 s).
    assert close_vhost_connections(amqp_url) >= 4
    with destination.slowed(0.1):
        # Cut 2: the sender is in the middle of its association with the destination.
        destination.wait_for_more_than(before + 2, 90)
        # At least the consumers doing the work are back (reconnecting takes about 5 s).
        assert close_vhost_connections(amqp_url) >= 3
    job = wait_final_job(gateway, series_uid)
    # The interrupted consumer's association was not abandoned and restarted.
    assert_delivered_once(job, destination)


def test_database_sessions_killed_during_a_run_lose_and_duplicate_nothing(
    gateway: Gateway, destination: RecordingSCP, pg_url: str, tmp_path: Path
) -> None:
    files = new_series(tmp_path)
    series_uid = series_uid_of(files)
    terminated: list[int] = []

    def fault(index: int, _status: int | None) -> bool:
        if index == SLICES // 2:
            terminated.append(terminate_db_sessions(pg_url))
        return False

    report = send_series(gateway.dicom_port, files, after_each=fault)
    # Instances answered with a failure may be resent; success means stored.
    assert_stored(gateway, pg_url, series_uid, report.acknowledged)
    unacked = [f for f in files if sop_uid(f) not in report.acknowledged]
    if unacked:
        send_series(gateway.dicom_port, unacked)
    terminated.append(terminate_db_sessions(pg_url))
    assert all(count > 0 for count in terminated), terminated
    job = wait_final_job(gateway, series_uid)
    assert_stored(gateway, pg_url, series_uid, {sop_uid(f) for f in files})
    assert_delivered_once(job, destination)


def test_a_late_instance_reopens_the_job_which_is_analysed_and_delivered_again(
    gateway: Gateway, destination: RecordingSCP, pg_url: str, tmp_path: Path
) -> None:
    """Late-instance policy (issue 11, point 5): the instance is stored, the series is
    announced again, and the job (analysed on one slice fewer) is re-opened: analysed on
    every instance, new result UIDs, delivered again; the job log says why."""
    files = new_series(tmp_path)
    series_uid = series_uid_of(files)
    send_series(gateway.dicom_port, files[:-1])
    job = wait_final_job(gateway, series_uid)
    assert_delivered_once(job, destination)
    assert job["analysed_instance_count"] == SLICES - 1
    late = send_series(gateway.dicom_port, files[-1:])
    assert late.acknowledged == {sop_uid(files[-1])}

    again = gateway.wait_for_job(
        lambda items: any(
            j["series_uid"] == series_uid
            and j["analysed_instance_count"] == SLICES
            and j["status"] == "done"
            for j in items
        ),
        timeout=120,
    )
    assert len([j for j in again if j["series_uid"] == series_uid]) == 1
    with gateway.client() as client:
        whole = client.get(f"/api/v1/jobs/{job['id']}").json()
        log = [line["message"] for line in client.get(f"/api/v1/jobs/{job['id']}/log").json()]
    assert_stored(gateway, pg_url, series_uid, {sop_uid(f) for f in files})
    assert_delivered_once(whole, destination)
    old, new = ({o["sop_instance_uid"] for o in j["outputs"]} for j in (job, whole))
    assert old and new and not old & new, "the results changed: they need new UIDs"
    assert (
        f"series grew from {SLICES - 1} to {SLICES} instances: checked and analysed again; "
        f"the {len(old)} result objects of the previous analysis are replaced" in log
    ), log
    assert whole["attempts"] == 2


def test_after_all_the_faults_nothing_is_stuck(
    gateway: Gateway, pg_url: str, amqp_url: str
) -> None:
    """Runs after the fault tests: every job final, every delivery final, every series
    announced, the outbox drained, no message waiting or parked."""
    time.sleep(2)  # let the last outbox round and the last acks land
    assert_nothing_stuck(gateway, pg_url)
    assert queue_depths(amqp_url) == {}


def test_no_patient_name_or_id_in_any_service_log(gateway: Gateway) -> None:
    """Runs last in this module: every study above carried the distinctive PHI."""
    logs = gateway.logs()
    assert "series complete" in logs and "delivered" in logs
    with gateway.client() as client:
        jobs = client.get("/api/v1/jobs", params={"limit": 100}).json()["items"]
        assert len(jobs) >= 10
        job_logs = "".join(client.get(f"/api/v1/jobs/{j['id']}/log").text for j in jobs)
    assert "analysis started" in job_logs
    for phi in (PATIENT_NAME, PATIENT_ID, "PHANTOM"):
        assert phi not in logs, f"{phi!r} appears in the service logs"
        assert phi not in job_logs, f"{phi!r} appears in a job log"
    assert not appears("7731", logs), "the patient ID's number appears in the service logs"
    assert not appears("7731", job_logs), "the patient ID's number appears in a job log"
