"""Crash recovery and growing series on the embedded deployment: one `pulmogate up` process
(SQLite, in-process bus) SIGKILLed at chosen points and started again with the same data
folder. The in-process bus loses every message in flight, so whatever the dead process was
doing is found again in the database at start.

Also the resend sequences of a real site: a series cut off by the crash and sent again by
the PACS (at once, or after the part was analysed), the same series sent again with nothing
new, an operator's resend and re-analysis.

The destination is the recording SCP (every C-STORE request is kept), the modality is
pynetdicom (each instance's status is known).
"""

import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.datasets import phantom_series, series_uid_of
from tests.fixtures.gateway import Gateway
from tests.fixtures.log_search import appears
from tests.reliability.faults import kill, restart, sqlite_rows, wait_api, wait_until
from tests.reliability.recording_scp import RecordingSCP, gateway_recorded_by
from tests.reliability.scu import send_series, sop_uid

pytestmark = pytest.mark.e2e

PATIENT_NAME = "PHANTOM^EMBEDDED"
PATIENT_ID = "PGEMB-5519-QZ"
IDLE_S = 20.0
ENV = {
    "PULMOGATE_MIN_SLICES": "16",
    "PULMOGATE_SERIES_IDLE_SECONDS": str(IDLE_S),
    "PULMOGATE_DELIVERY_BACKOFF_INITIAL_S": "1",
}
FINAL = {"done", "failed", "rejected", "ignored", "no_license", "license_expired"}


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, destination: RecordingSCP
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("embedded")
    with gateway_recorded_by(destination, tmp, [["up"]], extra_env=ENV) as gw:
        yield gw


_seed = iter(range(300, 1000))


def new_series(tmp_path: Path, slices: int, size: int = 96) -> list[Path]:
    """A fresh chest CT phantom (new UIDs), numbered 1..slices, with distinctive PHI."""
    return phantom_series(
        tmp_path,
        next(_seed),
        slices=slices,
        size=size,
        pixel_spacing_mm=350 / size,
        slice_thickness_mm=1.25,
        patient_name=PATIENT_NAME,
        patient_id=PATIENT_ID,
    )


def db(gw: Gateway, query: str) -> list[tuple[Any, ...]]:
    return sqlite_rows(gw.data_dir / "pulmogate.db", query)


def job_status(gw: Gateway, series_uid: str) -> str | None:
    rows = db(
        gw,
        "SELECT j.status FROM jobs j JOIN series s ON s.id = j.series_id "
        f"WHERE s.series_uid = '{series_uid}'",
    )
    return str(rows[0][0]) if rows else None


def job(gw: Gateway, series_uid: str) -> dict[str, Any]:
    """The series' only job, its detail and its log lines."""
    with gw.client() as client:
        items = client.get("/api/v1/jobs", params={"limit": 100}).json()["items"]
        mine = [j for j in items if j["series_uid"] == series_uid]
        assert len(mine) == 1, mine
        detail: dict[str, Any] = client.get(f"/api/v1/jobs/{mine[0]['id']}").json()
        detail["log"] = [
            line["message"] for line in client.get(f"/api/v1/jobs/{detail['id']}/log").json()
        ]
    return detail


def wait_job(
    gw: Gateway,
    series_uid: str,
    until: Callable[[dict[str, Any]], bool] = lambda j: j["status"] in FINAL,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Poll the API until the series' job satisfies ``until``."""
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        gw.assert_alive()
        try:
            seen = job(gw, series_uid)
            if until(seen):
                return seen
        except AssertionError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"job never got there: {seen}\n{gw.logs()[-4000:]}")


def crash(gw: Gateway) -> None:
    """SIGKILL the whole gateway (no shutdown code runs)."""
    kill(gw, "up")


def start_again(gw: Gateway, **env: str) -> None:
    """Start `pulmogate up` again on the same data folder (``env`` changes settings)."""
    gw.env.update(env)
    restart(gw, "up")
    wait_api(gw)


def metric(gw: Gateway, name: str, **labels: str) -> float:
    """One sample of the process's Prometheus exposition (0 when absent)."""
    with gw.client() as client:
        text = client.get("/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    braces = r"\{" + re.escape(wanted) + r"\}" if labels else ""
    found = re.search(r"^" + re.escape(name) + braces + r" (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def outputs_of(detail: dict[str, Any]) -> set[str]:
    return {o["sop_instance_uid"] for o in detail["outputs"]}


def assert_each_delivered_once(detail: dict[str, Any], destination: RecordingSCP) -> None:
    uids = outputs_of(detail)
    assert detail["status"] == "done", detail
    assert [d["status"] for d in detail["deliveries"]] == ["delivered"], detail["deliveries"]
    assert uids and set(destination.received(uids)) == uids
    assert not destination.duplicates(uids), destination.duplicates(uids)


def test_up_killed_mid_analysis_analyses_the_job_again_after_restart(
    gateway: Gateway, destination: RecordingSCP, tmp_path: Path
) -> None:
    """Issue 11 point 4: the job used to stay ANALYSING forever (the request died with the
    in-process bus, reconcile re-queued only QUEUED jobs)."""
    files = new_series(tmp_path, 100, size=128)
    series_uid = series_uid_of(files)
    send_series(gateway.dicom_port, files)
    wait_until(lambda: job_status(gateway, series_uid) == "analysing", 60, "the analysis", 0.01)
    gateway.processes["up"].send_signal(signal.SIGSTOP)
    assert job_status(gateway, series_uid) == "analysing", "analysis ended before the kill"
    crash(gateway)

    start_again(gateway)
    detail = wait_job(gateway, series_uid)

    assert detail["attempts"] == 2, detail["attempts"]
    assert detail["analysed_instance_count"] == 100
    assert_each_delivered_once(detail, destination)
    interrupted = [line for line in detail["log"] if line.startswith("analysis interrupted")]
    assert len(interrupted) == 1 and "is gone; queued again" in interrupted[0], detail["log"]
    assert sum(line.startswith("analysis started on 100 instances") for line in detail["log"]) == 2


def test_up_killed_mid_delivery_sends_again_and_the_destination_keeps_one_copy(
    gateway: Gateway, destination: RecordingSCP, tmp_path: Path
) -> None:
    files = new_series(tmp_path, 40)
    series_uid = series_uid_of(files)
    before = len(destination.requests)
    with destination.slowed(0.1):
        send_series(gateway.dicom_port, files)
        destination.wait_for_more_than(before + 3, 90)
        crash(gateway)
    start_again(gateway)
    detail = wait_job(gateway, series_uid)

    uids = outputs_of(detail)
    assert detail["status"] == "done" and detail["attempts"] == 1
    assert set(destination.kept) >= uids
    # The interrupted association is sent again in full, same UIDs: the PACS keeps one.
    assert destination.duplicates(uids) and max(destination.duplicates(uids).values()) == 2
    assert "delivery interrupted while sending; sending again" in detail["log"]


def _cut_off_after(files: list[Path], gateway: Gateway, acknowledged: int) -> set[str]:
    """Send ``files`` and SIGKILL the gateway right after the ``acknowledged``-th success."""

    def fault(index: int, _status: int | None) -> bool:
        if index == acknowledged - 1:
            crash(gateway)
        return index >= acknowledged - 1

    report = send_series(gateway.dicom_port, files, after_each=fault)
    assert len(report.acknowledged) == acknowledged, report.statuses
    return report.acknowledged


def test_a_series_cut_off_by_a_crash_and_resent_at_once_is_analysed_once_on_all_of_it(
    gateway: Gateway, destination: RecordingSCP, tmp_path: Path
) -> None:
    """F1, the PACS resends within ``series_idle_seconds``: the part received before the
    crash is not analysed as if it were the series."""
    files = new_series(tmp_path, 120)
    series_uid = series_uid_of(files)
    first = _cut_off_after(files, gateway, 60)
    start_again(gateway)
    assert db(gateway, f"SELECT status FROM series WHERE series_uid = '{series_uid}'") == [
        ("receiving",)
    ]
    again = send_series(gateway.dicom_port, files)
    assert again.acknowledged == {sop_uid(f) for f in files} and first <= again.acknowledged

    detail = wait_job(gateway, series_uid)

    assert (detail["instance_count"], detail["analysed_instance_count"]) == (120, 120)
    assert detail["attempts"] == 1
    assert_each_delivered_once(detail, destination)
    assert not any("may not be whole" in line for line in detail["log"]), detail["log"]


def test_a_series_analysed_in_part_after_a_crash_is_analysed_again_when_the_pacs_resends_all(
    gateway: Gateway, destination: RecordingSCP, tmp_path: Path
) -> None:
    """F1 as issue 11 found it: 100 of 200 acknowledged, the gateway killed, the PACS comes
    back only after the part was analysed and delivered. The job log says the part may not
    be whole; the resend re-opens the job, which is analysed on 200 and delivered with new
    result UIDs."""
    files = new_series(tmp_path, 200)
    series_uid = series_uid_of(files)
    _cut_off_after(files, gateway, 100)
    start_again(gateway, PULMOGATE_SERIES_IDLE_SECONDS="2")
    try:
        part = wait_job(gateway, series_uid, lambda j: j["status"] == "done")
        assert (part["instance_count"], part["analysed_instance_count"]) == (100, 100)
        assert any(
            "cut off by a restart of the gateway" in line
            and "it is analysed again if more instances arrive" in line
            for line in part["log"]
        ), part["log"]
        assert_each_delivered_once(part, destination)
        done_before = metric(gateway, "pulmogate_jobs_finished_total", status="done")

        resent = send_series(gateway.dicom_port, files)
        assert len(resent.acknowledged) == 200
        whole = wait_job(
            gateway,
            series_uid,
            lambda j: j["analysed_instance_count"] == 200 and j["status"] in FINAL,
        )
    finally:
        gateway.env["PULMOGATE_SERIES_IDLE_SECONDS"] = str(IDLE_S)

    assert whole["id"] == part["id"] and whole["instance_count"] == 200
    assert whole["attempts"] == 2
    assert_each_delivered_once(whole, destination)
    assert not outputs_of(whole) & outputs_of(part), "new results need new UIDs"
    log = whole["log"]
    grew = [line for line in log if line.startswith("series grew from 100 to 200 instances")]
    assert grew == [
        "series grew from 100 to 200 instances (100 received again, 100 new): checked and "
        f"analysed again; the {len(part['outputs'])} result objects of the previous analysis "
        "are replaced"
    ], log
    assert sum(line.startswith("analysis started on 200 instances") for line in log) == 1
    assert [line for line in log if line.startswith("delivering results to")][-1:] == [
        f"delivering results to {destination.ae_title}-{destination.port} "
        f"({destination.ae_title}@127.0.0.1:{destination.port})"
    ]
    # One job, re-analysed: it is counted again when it is final again (not per delivery).
    assert metric(gateway, "pulmogate_jobs_finished_total", status="done") == done_before + 1
    assert metric(gateway, "pulmogate_jobs_reopened_total", reason="grown") >= 1


def test_an_identical_resend_is_logged_and_sends_nothing_and_an_operator_can_reanalyse(
    gateway: Gateway, destination: RecordingSCP, tmp_path: Path
) -> None:
    """Issue 10, "a re-sent series vanishes": now the job log says so; a new analysis is
    the operator's POST /jobs/{id}/reanalyse (same instances: same result UIDs, so the
    PACS keeps one copy)."""
    files = new_series(tmp_path, 40)
    series_uid = series_uid_of(files)
    send_series(gateway.dicom_port, files)
    first = wait_job(gateway, series_uid)
    assert_each_delivered_once(first, destination)
    requests = len(destination.requests)

    send_series(gateway.dicom_port, files)
    noted = wait_job(
        gateway,
        series_uid,
        lambda j: any(line.startswith("series received again") for line in j["log"]),
    )

    assert noted["log"][-1] == (
        "series received again: 40 instances, all already stored; no new analysis; "
        f"POST /api/v1/jobs/{noted['id']}/reanalyse analyses it again"
    )
    assert noted["status"] == "done" and noted["attempts"] == 1
    assert len(destination.requests) == requests

    with gateway.client() as client:
        answer = client.post(f"/api/v1/jobs/{noted['id']}/reanalyse")
    assert answer.status_code == 202, answer.text
    again = wait_job(gateway, series_uid, lambda j: j["attempts"] == 2 and j["status"] in FINAL)
    assert again["status"] == "done"
    assert outputs_of(again) == outputs_of(first)
    assert "re-analysis requested by admin: checked and analysed again" in " | ".join(again["log"])
    assert set(destination.kept) >= outputs_of(again)
    assert set(destination.duplicates(outputs_of(again)).values()) == {2}


def test_resend_keeps_the_total_time_and_counts_no_second_finished_job(
    gateway: Gateway, destination: RecordingSCP, tmp_path: Path
) -> None:
    """Issue 10, "resend corrupts the figures": total_time_s went from 17 s to 251 s and
    pulmogate_jobs_finished_total{status="done"} counted 6 for 5 jobs."""
    files = new_series(tmp_path, 40)
    series_uid = series_uid_of(files)
    send_series(gateway.dicom_port, files)
    first = wait_job(gateway, series_uid)
    assert first["status"] == "done"
    done = metric(gateway, "pulmogate_jobs_finished_total", status="done")
    resends = metric(gateway, "pulmogate_job_resends_total")
    time.sleep(1.5)

    with gateway.client() as client:
        answer = client.post(f"/api/v1/jobs/{first['id']}/resend")
    assert answer.status_code == 200, answer.text
    after = wait_job(
        gateway,
        series_uid,
        lambda j: (
            j["status"] == "done"
            and j["deliveries"][0]["delivered_at"] != first["deliveries"][0]["delivered_at"]
        ),
    )

    assert (after["total_time_s"], after["finished_at"]) == (
        first["total_time_s"],
        first["finished_at"],
    )
    assert (after["resend_count"], after["attempts"]) == (1, 1) and after["resent_at"]
    assert metric(gateway, "pulmogate_jobs_finished_total", status="done") == done
    assert metric(gateway, "pulmogate_job_resends_total") == resends + 1
    assert set(destination.duplicates(outputs_of(after)).values()) == {2}


def test_after_the_crashes_nothing_is_stuck(gateway: Gateway) -> None:
    """Runs after the tests above: every job DONE, every delivery DELIVERED, no series
    RECEIVING, nothing left in the outbox, nobody analysing."""
    time.sleep(2)
    assert db(gateway, "SELECT id, status FROM jobs WHERE status <> 'done'") == []
    assert db(gateway, "SELECT id FROM jobs WHERE worker IS NOT NULL") == []
    assert db(gateway, "SELECT id, status FROM deliveries WHERE status <> 'delivered'") == []
    assert db(gateway, "SELECT id FROM series WHERE status = 'receiving'") == []
    assert db(gateway, "SELECT id FROM outbox WHERE published_at IS NULL") == []


def test_no_patient_name_or_id_in_the_logs(gateway: Gateway) -> None:
    """Runs last: every series above carried the distinctive PHI."""
    logs = gateway.logs()
    assert "series complete" in logs and "interrupted analysis queued again" in logs
    for phi in (PATIENT_NAME, PATIENT_ID, "EMBEDDED", "5519"):
        assert not appears(phi, logs), f"{phi!r} appears in the process log"
