"""Orthanc as the hospital PACS: it sends the study to PulmoGate and the results land in it.

A PACS forwards whole studies. The study holds, beside the CT series, a scout and a dose
screen; forwarded, only the CT series makes a job. Forwarded again once PulmoGate's results
are in it (overlay, summary, SR, SEG), the store succeeds and PulmoGate's own results are
never analysed: still one job.
"""

import time
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from pulmogate.tools.phantom import make_phantom, write_series
from tests.fixtures.gateway import add_route, run_gateway
from tests.fixtures.infra import free_port
from tests.fixtures.orthanc import run_orthanc

pytestmark = pytest.mark.e2e


def _extras(series: Path, out: Path) -> list[Path]:
    """A scout (CT, ImageType LOCALIZER) and a dose screen (Secondary Capture) of the study."""
    out.mkdir()
    scout = dcmread(sorted(series.iterdir())[0])
    scout.SeriesInstanceUID = generate_uid()
    scout.SOPInstanceUID = scout.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.SeriesNumber = 1
    scout.save_as(out / "scout.dcm")
    dose = dcmread(sorted(series.iterdir())[0])
    dose.SOPClassUID = dose.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    dose.SeriesInstanceUID = generate_uid()
    dose.SOPInstanceUID = dose.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dose.Modality, dose.SeriesNumber, dose.ConversionType = "OT", 999, "WSD"
    dose.save_as(out / "dose.dcm")
    return [out / "scout.dcm", out / "dose.dcm"]


def _forward(pacs: httpx.Client, study_id: str) -> None:
    moved = pacs.post(
        "/modalities/pulmogate/store", json={"Resources": [study_id], "Synchronous": True}
    )
    assert moved.status_code == 200, moved.text


def test_orthanc_forwards_a_whole_study_and_receives_the_results_back(tmp_path: Path) -> None:
    series = tmp_path / "ct"
    write_series(make_phantom(slices=60, size=192, involvement=0.2, seed=11), series, seed=11)
    extras = _extras(series, tmp_path / "extras")
    dicom_port = free_port()
    modalities: dict[str, list[object]] = {"pulmogate": ["PULMOGATE", "127.0.0.1", dicom_port]}
    with (
        run_orthanc(tmp_path, modalities) as orthanc,
        run_gateway(tmp_path, [["up"]], dicom_port=dicom_port) as gw,
        orthanc.client() as pacs,
    ):
        add_route(gw, orthanc.dicom_port, dest_aet="ORTHANC", source_ae_title="ORTHANC")
        for path in [*sorted(series.iterdir()), *extras]:
            assert pacs.post("/instances", content=path.read_bytes()).status_code == 200
        (study_id,) = pacs.get("/studies").json()
        _forward(pacs, study_id)

        jobs = gw.wait_for_job()
        assert [j["status"] for j in jobs] == ["done"], jobs

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            series_ids = pacs.get(f"/studies/{study_id}").json()["Series"]
            if len(series_ids) >= 7:  # CT, scout, dose, overlay, summary, SR, SEG
                break
            time.sleep(0.5)
        descriptions = sorted(
            pacs.get(f"/series/{s}").json()["MainDicomTags"].get("SeriesDescription", "")
            for s in series_ids
        )
        assert len(series_ids) == 7, descriptions
        assert len([d for d in descriptions if d.startswith("PulmoGate")]) == 4, descriptions

        _forward(pacs, study_id)  # the whole study again, PulmoGate's results included
        time.sleep(4)  # the quiet period and routing of anything that would make a job
        jobs = gw.wait_for_job()
        assert [j["status"] for j in jobs] == ["done"], jobs
        assert "discarded" in gw.logs()
