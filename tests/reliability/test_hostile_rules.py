"""A pathological rule filter that slipped past the save-time checks (written to the
database directly, as an old version would have stored it) while a real embedded gateway
(`pulmogate up`) routes a series it backtracks on: C-ECHO and /healthz keep answering,
and the job says which filters timed out."""

import sqlite3
import threading
import time
from pathlib import Path

import httpx
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from services.receiver.tests.helpers import ct_slice
from tests.fixtures.gateway import run_gateway

SLOW_RULES = 10
TIMEOUT_MS = 200
DESCRIPTION = "a" * 40 + "b"  # ^(a|aa)+$ on it: hours with stdlib re, GIL held throughout
LATENCY_BOUND_S = 0.5


def _insert_slow_rules(database: Path) -> None:
    with sqlite3.connect(database) as db:
        db.executemany(
            "INSERT INTO routing_rules (name, enabled, priority, source_ip, source_ae_title,"
            " study_description_filter, series_description_filter, ttl_days)"
            " VALUES (?, 1, ?, NULL, NULL, '.*', '^(a|aa)+$', 30)",
            [(f"legacy slow {n}", 10 + n) for n in range(SLOW_RULES)],
        )


def _send_series(port: int) -> None:
    ae = AE(ae_title="CT_SCANNER")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="PULMOGATE")
    assert assoc.is_established
    study, series = generate_uid(), generate_uid()
    try:
        for k in range(3):
            ds = ct_slice(study, series, k)
            ds.SeriesDescription = DESCRIPTION
            assert int(assoc.send_c_store(ds).Status) == 0
    finally:
        assoc.release()


def _echo_seconds(port: int) -> float:
    start = time.monotonic()
    ae = AE(ae_title="MONITOR")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="PULMOGATE")
    assert assoc.is_established
    try:
        assert int(assoc.send_c_echo().Status) == 0
    finally:
        assoc.release()
    return time.monotonic() - start


def test_a_slow_filter_during_routing_stalls_neither_c_echo_nor_healthz(tmp_path: Path) -> None:
    env = {"PULMOGATE_ACCEPT_FROM": "any", "PULMOGATE_RULE_REGEX_TIMEOUT_MS": str(TIMEOUT_MS)}
    with run_gateway(tmp_path, [["up"]], extra_env=env) as gw:
        _insert_slow_rules(gw.data_dir / "pulmogate.db")
        echo: list[float] = []
        health: list[float] = []
        done = threading.Event()

        def monitor() -> None:
            while not done.is_set():
                echo.append(_echo_seconds(gw.dicom_port))
                start = time.monotonic()
                assert httpx.get(f"{gw.api}/healthz", timeout=30).status_code == 200
                health.append(time.monotonic() - start)
                time.sleep(0.05)

        watcher = threading.Thread(target=monitor, daemon=True)
        watcher.start()
        started = time.monotonic()
        _send_series(gw.dicom_port)
        (job,) = gw.wait_for_job(timeout=60)
        routed_in = time.monotonic() - started
        done.set()
        watcher.join(timeout=30)
        with gw.client() as client:
            log = client.get(f"/api/v1/jobs/{job['id']}/log").json()
    assert job["status"] == "ignored", job
    assert job["reason"].count("REGEX_TIMEOUT") == SLOW_RULES, job["reason"]
    assert routed_in > SLOW_RULES * TIMEOUT_MS / 1000  # the filters did run out their time
    assert len(echo) >= 5 and max(echo) < LATENCY_BOUND_S, echo
    assert max(health) < LATENCY_BOUND_S, health
    assert any("REGEX_TIMEOUT" in str(entry) for entry in log), log
