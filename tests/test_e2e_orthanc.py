"""Orthanc as the hospital PACS: it sends the study to PulmoGate and the results land in it."""

import time
from pathlib import Path

import pytest

from pulmogate.common.phantom import make_phantom, write_series
from tests.fixtures.gateway import add_route, run_gateway
from tests.fixtures.infra import free_port
from tests.fixtures.orthanc import run_orthanc

pytestmark = pytest.mark.e2e


def test_orthanc_sends_a_study_and_receives_the_results_back(tmp_path: Path) -> None:
    series = tmp_path / "ct"
    write_series(make_phantom(slices=60, size=192, involvement=0.2, seed=11), series, seed=11)
    dicom_port = free_port()
    modalities: dict[str, list[object]] = {"pulmogate": ["PULMOGATE", "127.0.0.1", dicom_port]}
    with (
        run_orthanc(tmp_path, modalities) as orthanc,
        run_gateway(tmp_path, [["up"]], dicom_port=dicom_port) as gw,
        orthanc.client() as pacs,
    ):
        add_route(gw, orthanc.dicom_port, dest_aet="ORTHANC", source_ae_title="ORTHANC")
        for path in sorted(series.iterdir()):
            assert pacs.post("/instances", content=path.read_bytes()).status_code == 200
        (study_id,) = pacs.get("/studies").json()
        moved = pacs.post(
            "/modalities/pulmogate/store", json={"Resources": [study_id], "Synchronous": True}
        )
        assert moved.status_code == 200, moved.text

        jobs = gw.wait_for_job()
        assert [j["status"] for j in jobs] == ["done"], jobs

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            series_ids = pacs.get(f"/studies/{study_id}").json()["Series"]
            if len(series_ids) >= 3:
                break
            time.sleep(0.5)
        descriptions = sorted(
            pacs.get(f"/series/{s}").json()["MainDicomTags"].get("SeriesDescription", "")
            for s in series_ids
        )
        assert len(series_ids) >= 3, descriptions
        assert any("PulmoGate" in d for d in descriptions), descriptions
