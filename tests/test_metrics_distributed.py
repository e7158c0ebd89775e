"""Every process serves its own /metrics, with the values of its own work (distributed and up).

Five ``pulmogate <service>`` processes on real Postgres and RabbitMQ; the bus workers on their
``metrics_port``, the api on its own port. One series goes in by C-STORE and out to a storescp;
then each process is scraped over HTTP and its figures are compared with what happened.
``pulmogate up`` (one process, one registry) shows them all at the api's /metrics alone.
"""

import shutil
import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pulmogate.tools.phantom import make_phantom, write_series
from tests.fixtures.gateway import add_route, run_gateway, storescp, storescu
from tests.fixtures.infra import free_port

pytestmark = pytest.mark.e2e

WORKERS = ["receiver", "router", "inference", "sender"]
SLICES = 60


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, token: str | None = None) -> Samples:
    """Every sample of a Prometheus text page, by name and labels."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ct")
    # A whole chest in few pixels: 128 px of 1.4 mm, 60 slices of 2.5 mm.
    phantom = make_phantom(
        slices=SLICES, size=128, pixel_spacing_mm=1.4, slice_thickness_mm=2.5, seed=5
    )
    write_series(phantom, folder, seed=5)
    return folder


def test_each_service_process_serves_metrics_of_its_own_work(
    tmp_path: Path, ct_series: Path, pg_url: str, amqp_url: str
) -> None:
    token = "scrape-token-for-the-test"
    ports = {name: free_port() for name in [*WORKERS, "api"]}
    process_env = {
        name: {"PULMOGATE_METRICS_PORT": str(port), "PULMOGATE_METRICS_TOKEN": token}
        for name, port in ports.items()
    }
    with (
        storescp(tmp_path) as (dest_port, _),
        run_gateway(
            tmp_path,
            [[name] for name in [*WORKERS, "api"]],
            database_url=pg_url,
            broker_url=amqp_url,
            process_env=process_env,
        ) as gw,
    ):
        add_route(gw, dest_port, source_ae_title="CT_SCANNER")
        sent = storescu(gw.dicom_port, ct_series)
        assert sent.returncode == 0, sent.stderr
        jobs = gw.wait_for_job()
        assert [j["status"] for j in jobs] == ["done"], jobs

        scraped = {
            name: scrape(f"http://127.0.0.1:{ports[name]}/metrics", token) for name in WORKERS
        }
        scraped["api"] = scrape(f"{gw.api}/metrics", token)
        unauthorised = httpx.get(f"http://127.0.0.1:{ports['router']}/metrics", timeout=10)
        api_metrics_port_closed = refuses_connections(ports["api"])
        usage = shutil.disk_usage(gw.data_dir / "storage")

    assert unauthorised.status_code == 401, unauthorised.text
    # A process serves its registry once: the api at its own /metrics, not on metrics_port too.
    assert api_metrics_port_closed

    receiver, router, inference, sender, api = (
        scraped[n] for n in ["receiver", "router", "inference", "sender", "api"]
    )
    assert value(receiver, "pulmogate_instances_received_total", status="0x0000") == SLICES
    assert value(receiver, "pulmogate_series_completed_total") == 1
    assert value(inference, "pulmogate_analysis_seconds_count") == 1
    assert value(inference, "pulmogate_analysis_seconds_sum") > 0
    assert value(sender, "pulmogate_deliveries_total", outcome="delivered") == 1
    assert value(sender, "pulmogate_jobs_finished_total", status="done") == 1
    assert value(api, "pulmogate_jobs", status="done") == 1
    # Each process counts only its own work.
    assert value(router, "pulmogate_instances_received_total", status="0x0000") == 0
    assert value(api, "pulmogate_analysis_seconds_count") == 0

    free = 100.0 * usage.free / usage.total
    for name, samples in scraped.items():
        gauge = value(samples, "pulmogate_storage_free_percent")
        assert 0 < gauge <= 100, (name, gauge)
        assert abs(gauge - free) < 2.0, (name, gauge, free)
        assert value(samples, "process_resident_memory_bytes") > 0, name


def test_pulmogate_up_serves_every_service_metrics_at_the_api_and_opens_no_metrics_port(
    tmp_path: Path, ct_series: Path
) -> None:
    metrics_port = free_port()
    with (
        storescp(tmp_path) as (dest_port, _),
        run_gateway(
            tmp_path, [["up"]], extra_env={"PULMOGATE_METRICS_PORT": str(metrics_port)}
        ) as gw,
    ):
        add_route(gw, dest_port, source_ae_title="CT_SCANNER")
        sent = storescu(gw.dicom_port, ct_series)
        assert sent.returncode == 0, sent.stderr
        jobs = gw.wait_for_job()
        assert [j["status"] for j in jobs] == ["done"], jobs
        samples = scrape(f"{gw.api}/metrics")
        metrics_port_closed = refuses_connections(metrics_port)

    assert metrics_port_closed
    assert value(samples, "pulmogate_instances_received_total", status="0x0000") == SLICES
    assert value(samples, "pulmogate_analysis_seconds_count") == 1
    assert value(samples, "pulmogate_deliveries_total", outcome="delivered") == 1
    assert value(samples, "pulmogate_jobs", status="done") == 1
    assert 0 < value(samples, "pulmogate_storage_free_percent") <= 100
