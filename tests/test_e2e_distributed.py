"""Five services as five OS processes on real RabbitMQ and Postgres, dcmtk at both ends."""

from pathlib import Path
from typing import Any

import pytest

from pulmogate.tools.phantom import make_phantom, write_series
from tests.fixtures.gateway import add_route, received, run_gateway, storescp, storescu

pytestmark = pytest.mark.e2e

SERVICES = [["receiver"], ["router"], ["inference"], ["sender"], ["api"]]


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic chest CT series of 110 slices with about 30 % involvement."""
    folder = tmp_path_factory.mktemp("ct")
    write_series(make_phantom(slices=110, size=192, involvement=0.3, seed=3), folder, seed=3)
    return folder


def test_five_processes_analyse_a_series_and_deliver_results_into_its_study(
    tmp_path: Path, ct_series: Path, pg_url: str, amqp_url: str
) -> None:
    from pydicom import dcmread

    with (
        storescp(tmp_path) as (dest_port, dest_dir),
        run_gateway(tmp_path, SERVICES, database_url=pg_url, broker_url=amqp_url) as gw,
    ):
        add_route(gw, dest_port, source_ae_title="CT_SCANNER")
        sent = storescu(gw.dicom_port, ct_series)
        assert sent.returncode == 0, sent.stderr
        jobs = gw.wait_for_job()
        assert [j["status"] for j in jobs] == ["done"], jobs
        with gw.client() as client:
            job: dict[str, Any] = client.get(f"/api/v1/jobs/{jobs[0]['id']}").json()
            log = client.get(f"/api/v1/jobs/{jobs[0]['id']}/log").json()
        assert job["prediction"].startswith("CT signs of viral pneumonia"), job
        assert job["processing_time_s"] > 0 and job["total_time_s"] >= job["processing_time_s"]
        assert {"load", "render", "encode"} <= set(job["timings"])
        assert [d["status"] for d in job["deliveries"]] == ["delivered"]
        assert any("delivered" in line["message"] for line in log)

        study_uid = dcmread(next(ct_series.iterdir()), stop_before_pixels=True).StudyInstanceUID
        objects = received(dest_dir)
        kinds = {
            str(ds.SeriesDescription).split()[1] for ds in objects if "SeriesDescription" in ds
        }
        assert {ds.StudyInstanceUID for ds in objects} == {study_uid}
        assert len({ds.SeriesInstanceUID for ds in objects}) >= 2
        assert any(ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" for ds in objects)
        assert kinds, objects

        # A redelivered analysis.requested makes no second set of outputs.
        output_uids = sorted(o["sop_instance_uid"] for o in job["outputs"])
        _redeliver_analysis_request(amqp_url, job["id"])
        import time

        time.sleep(3)
        with gw.client() as client:
            again = client.get(f"/api/v1/jobs/{job['id']}").json()
            total = client.get("/api/v1/jobs").json()["total"]
        assert sorted(o["sop_instance_uid"] for o in again["outputs"]) == output_uids
        assert again["status"] == "done" and total == 1
        assert "ignoring redelivery" in gw.logs()


def _redeliver_analysis_request(amqp_url: str, job_id: int) -> None:
    import asyncio

    from pulmogate.common.bus import make_bus
    from pulmogate.common.events import AnalysisRequested

    async def publish() -> None:
        bus = make_bus(amqp_url)
        await bus.connect()
        await bus.publish(AnalysisRequested(job_id=job_id))
        await bus.close()

    asyncio.run(publish())
