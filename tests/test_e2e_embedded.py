"""`pulmogate up` on the embedded default: results delivered, and every refusal explained."""

import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import UID

from pulmogate.tools.phantom import make_phantom, write_series
from tests.fixtures import quirks
from tests.fixtures.dciodvfy import dciodvfy_errors
from tests.fixtures.gateway import Gateway, add_route, received, run_gateway, storescp, storescu
from tests.fixtures.log_search import appears

pytestmark = pytest.mark.e2e

REAL_CT = Path("/work/shared/data/real_ct")
REAL_STUDIES = ("covid_P001", "cap_cap001", "normal_normal001")
# What a Python exception leaves in a text: its name, a traceback, a source line.
EXCEPTION_TEXT = re.compile(r"\b[A-Z]\w*(Error|Exception)\b|Traceback|File \"")


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedded")


@pytest.fixture(scope="module")
def destination(tmp_module: Path) -> Iterator[tuple[int, Path]]:
    with storescp(tmp_module, "DEST") as dest:
        yield dest


@pytest.fixture(scope="module")
def gateway(tmp_module: Path, destination: tuple[int, Path]) -> Iterator[Gateway]:
    with run_gateway(tmp_module, [["up"]]) as gw:
        add_route(gw, destination[0], source_ae_title="CT_SCANNER")
        yield gw


def _series(tmp: Path, name: str, **kwargs: Any) -> Path:
    folder = tmp / name
    phantom_args = {
        k: kwargs.pop(k)
        for k in ("slices", "size", "slice_thickness_mm", "involvement")
        if k in kwargs
    }
    phantom = make_phantom(**{"slices": 40, "size": 128, **phantom_args})
    write_series(phantom, folder, series_uid=None, seed=hash(name) % 1000, **kwargs)
    return folder


def _job_for(gw: Gateway, series_uid: str) -> dict[str, Any]:
    jobs = gw.wait_for_job(
        lambda js: any(
            j["series_uid"] == series_uid
            and j["status"] not in ("queued", "analysing", "analysed", "delivering")
            for j in js
        )
    )
    job = next(j for j in jobs if j["series_uid"] == series_uid)
    with gw.client() as client:
        detail: dict[str, Any] = client.get(f"/api/v1/jobs/{job['id']}").json()
        detail["log"] = client.get(f"/api/v1/jobs/{job['id']}/log").json()
    return detail


def _series_uid(folder: Path) -> str:
    return str(dcmread(next(folder.iterdir()), stop_before_pixels=True).SeriesInstanceUID)


def test_embedded_gateway_delivers_results_into_the_same_study(
    gateway: Gateway, destination: tuple[int, Path], tmp_path: Path
) -> None:
    folder = _series(tmp_path, "chest", slices=110, size=160, involvement=0.4)
    assert storescu(gateway.dicom_port, folder).returncode == 0
    job = _job_for(gateway, _series_uid(folder))
    assert job["status"] == "done", job
    assert "CT-2" in job["prediction"] or "CT-3" in job["prediction"], job["prediction"]
    study = str(dcmread(next(folder.iterdir()), stop_before_pixels=True).StudyInstanceUID)
    mine = [ds for ds in received(destination[1]) if ds.StudyInstanceUID == study]
    assert {o["sop_instance_uid"] for o in job["outputs"]} == {ds.SOPInstanceUID for ds in mine}


@pytest.mark.parametrize(
    ("name", "kwargs", "status", "code", "words"),
    [
        ("mr", {"modality": "MR"}, "rejected", "NOT_CT", "modality MR"),
        (
            "thick",
            {"slice_thickness_mm": 5.0},
            "rejected",
            "SLICE_TOO_THICK",
            "5.0 mm exceeds the 2.5 mm",
        ),
    ],
)
def test_unsuitable_series_are_rejected_with_their_reason(
    gateway: Gateway,
    tmp_path: Path,
    name: str,
    kwargs: dict[str, Any],
    status: str,
    code: str,
    words: str,
) -> None:
    folder = _series(tmp_path, name, **kwargs)
    assert storescu(gateway.dicom_port, folder).returncode == 0
    job = _job_for(gateway, _series_uid(folder))
    assert (job["status"], job["reason_code"]) == (status, code), job
    assert words in job["reason"]
    assert any(words in line["message"] for line in job["log"])


def test_an_unnamed_sender_is_refused_at_association_with_the_reason_logged(
    gateway: Gateway, tmp_path: Path
) -> None:
    """accept_from=rules (the default): a calling AE no enabled rule names cannot send."""
    folder = _series(tmp_path, "stranger", slices=4, size=64)
    refused = storescu(gateway.dicom_port, folder, calling="STRANGER")
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stderr + refused.stdout
    assert "'STRANGER' from 127.0.0.1 is not named by any enabled routing rule" in gateway.logs()


def test_a_named_sender_whose_series_no_rule_matches_is_ignored_with_the_reason(
    gateway: Gateway, tmp_path: Path
) -> None:
    with gateway.client() as client:
        rule = {
            "name": "visitor",
            "source_ae_title": "VISITOR",
            "series_description_filter": "^NO$",
        }
        assert client.post("/api/v1/rules", json=rule).status_code == 201
    folder = _series(tmp_path, "visitor")
    assert storescu(gateway.dicom_port, folder, calling="VISITOR").returncode == 0
    job = _job_for(gateway, _series_uid(folder))
    assert (job["status"], job["reason_code"]) == ("ignored", "NO_MATCHING_RULE"), job
    assert "VISITOR" in job["reason"]


def test_a_corrupt_file_rejects_the_job_with_a_reason(gateway: Gateway, tmp_path: Path) -> None:
    folder = _series(tmp_path, "corrupt")
    victim = sorted(folder.iterdir())[5]
    ds = dcmread(victim)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    ds.save_as(victim)
    assert storescu(gateway.dicom_port, folder).returncode == 0
    job = _job_for(gateway, _series_uid(folder))
    assert job["status"] == "rejected", job
    assert job["reason"] and job["reason_code"], job


def test_a_wrong_called_ae_is_refused_a_non_ct_object_is_discarded_and_the_gateway_stays_up(
    gateway: Gateway, tmp_path: Path
) -> None:
    folder = _series(tmp_path, "wrong-ae")
    wrong = storescu(gateway.dicom_port, folder, called="NOT_PULMOGATE")
    assert wrong.returncode != 0
    assert (
        "Called AE Title Not Recognized" in wrong.stderr + wrong.stdout
        or "reject" in (wrong.stderr + wrong.stdout).lower()
    )

    mr_folder = tmp_path / "mr-object"
    mr_folder.mkdir()
    ds = dcmread(next(folder.iterdir()))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID(
        "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
    )
    ds.SeriesInstanceUID = "2.25.424242424242"
    ds.save_as(mr_folder / "mr.dcm")
    # NON_CT_OBJECTS=discard (default): answered Success, kept nowhere, no job.
    discarded = storescu(gateway.dicom_port, mr_folder, options=("-R",))
    assert discarded.returncode == 0, discarded.stderr
    time.sleep(3)  # longer than the quiet period: a series would have become a job
    with gateway.client() as client:
        jobs = client.get("/api/v1/jobs", params={"q": "2.25.424242424242"}).json()
        arrivals = client.get("/api/v1/arrivals").json()
    assert jobs["items"] == [] and all(a["series_uid"] != ds.SeriesInstanceUID for a in arrivals)

    echo = subprocess.run(
        [
            *("/usr/bin/echoscu", "-aet", "CT_SCANNER", "-aec", "PULMOGATE"),
            *("127.0.0.1", str(gateway.dicom_port)),
        ],
        capture_output=True,
    )
    assert echo.returncode == 0  # a named sender; unnamed ones are rejected by default
    gateway.assert_alive()


def _notice_objects(folder: Path, study_uid: str, timeout: float = 60.0) -> list[Any]:
    """The failure notice objects of ``study_uid`` a storescp folder received (page and SR)."""
    deadline = time.monotonic() + timeout
    found: list[Any] = []
    while time.monotonic() < deadline:
        found = [
            ds
            for ds in received(folder)
            if ds.StudyInstanceUID == study_uid and int(ds.SeriesNumber) in (9005, 9006)
        ]
        if len(found) == 2:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{len(found)} notice objects arrived for the study")


@pytest.mark.parametrize(
    ("name", "change", "status", "code"),
    [
        ("thick-notice", {"slice_thickness_mm": 5.0}, "rejected", "SLICE_TOO_THICK"),
        ("gap-notice", {"drop_slice": 12}, "rejected", "SLICE_GAP"),
    ],
    ids=["refused-by-the-router", "refused-by-the-analysis"],
)
def test_a_series_that_gets_no_analysis_gets_a_failure_notice_in_its_study(
    gateway: Gateway,
    destination: tuple[int, Path],
    tmp_path: Path,
    name: str,
    change: dict[str, Any],
    status: str,
    code: str,
) -> None:
    """The radiologist sees "PulmoGate: analysis not performed" and why in the study, as a
    Secondary Capture page and an SR; the job keeps its status, its delivery shows."""
    drop = change.pop("drop_slice", None)
    folder = _series(tmp_path, name, slices=30, size=64, **change)
    if drop is not None:
        sorted(folder.iterdir())[drop].unlink()
    assert storescu(gateway.dicom_port, folder).returncode == 0
    study_uid = str(dcmread(next(folder.iterdir()), stop_before_pixels=True).StudyInstanceUID)
    job = _job_for(gateway, _series_uid(folder))
    assert (job["status"], job["reason_code"]) == (status, code), job
    notice = {int(ds.SeriesNumber): ds for ds in _notice_objects(destination[1], study_uid)}
    page, report = notice[9005], notice[9006]
    assert page.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and page.Modality == "OT"
    assert page.SeriesDescription == report.SeriesDescription == "PulmoGate: analysis not performed"
    assert page.PatientName == report.PatientName == "PHANTOM^CHEST"
    texts = [item.TextValue for item in report.ContentSequence if item.ValueType == "TEXT"]
    assert len(texts) == 1 and f"{code}: " in texts[0] and job["reason"] in texts[0]
    assert not _dciodvfy_errors({"page": page.filename, "sr": report.filename})
    for _ in range(60):
        job = _job_for(gateway, _series_uid(folder))
        if job["delivery_counts"] == {"delivered": 1}:
            break
        time.sleep(0.5)
    assert job["status"] == status and job["delivery_counts"] == {"delivered": 1}, job
    assert {o["kind"] for o in job["outputs"]} == {"notice", "noticesr"}
    assert any("failure notice built" in line["message"] for line in job["log"])
    with gateway.client() as client:
        page_html = client.get(f"/jobs/{job['id']}").text
        [preview] = re.findall(rf"/jobs/{job['id']}/preview/(\d+)\.png", page_html)
        png = client.get(f"/jobs/{job['id']}/preview/{preview}.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"


def test_a_rule_with_failure_notices_off_sends_nothing_for_a_refused_series(
    gateway: Gateway, destination: tuple[int, Path], tmp_path: Path
) -> None:
    with gateway.client() as client:
        dest_id = client.get("/api/v1/destinations").json()[0]["id"]
        rule = {
            "name": "quiet",
            "source_ae_title": "QUIET_CT",
            "failure_notices": False,
            "destination_ids": [dest_id],
        }
        assert client.post("/api/v1/rules", json=rule).status_code == 201
    folder = _series(tmp_path, "quiet-thick", slices=20, size=64, slice_thickness_mm=5.0)
    assert storescu(gateway.dicom_port, folder, calling="QUIET_CT").returncode == 0
    job = _job_for(gateway, _series_uid(folder))
    assert job["reason_code"] == "SLICE_TOO_THICK"
    time.sleep(3)
    job = _job_for(gateway, _series_uid(folder))
    assert job["outputs"] == [] and job["deliveries"] == [], job


def _dciodvfy_errors(files: dict[str, str]) -> dict[str, list[str]]:
    """dciodvfy's Error lines for each file (dicom3tools, installed with the test tools)."""
    errors = {}
    for kind, path in files.items():
        lines = dciodvfy_errors(path)
        if lines:
            errors[kind] = lines
    return errors


@pytest.mark.skipif(not REAL_CT.is_dir(), reason="../shared/data/real_ct is missing")
def test_real_world_dicom_ends_done_or_refused_with_a_code_and_its_results_arrive(
    gateway: Gateway, destination: tuple[int, Path], tmp_path: Path
) -> None:
    """The three shared real studies (anonymised headers: type 2 attributes missing; JPEG
    Lossless, proposed as a PACS does with `storescu -xs`; files in no anatomical order)
    and one synthetic series with every other quirk (Implicit VR with a vendor's private
    element that breaks its VR, PHIBDAY and other bad patient values, padding outside the
    reconstruction circle, a negative SpacingBetweenSlices, InstanceNumbers the other way)
    go through the whole gateway. Each job ends done (or refused with a code), no job log
    holds Python exception text or a patient value, and the results reach the destination,
    where dciodvfy finds no error in one object of each kind.
    The grades are not asserted here: the model's own regression tests own them."""
    quirky = tmp_path / "quirky"
    quirks.quirky_series(quirky)
    folders = {name: REAL_CT / name for name in REAL_STUDIES} | {"quirky": quirky}
    with ThreadPoolExecutor(len(folders)) as pool:  # as PACS do: several associations at once
        sends = {
            name: pool.submit(storescu, gateway.dicom_port, folder, options=("-xs",))
            for name, folder in folders.items()
        }
    for name, sent in sends.items():
        assert sent.result().returncode == 0, (name, sent.result().stderr)
    series = {
        name: str(dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID)
        for name, folder in folders.items()
    }
    jobs = {name: _job_for(gateway, uid) for name, uid in series.items()}
    delivered = {ds.SOPInstanceUID: ds.filename for ds in received(destination[1])}
    for name, job in jobs.items():
        assert job["status"] == "done" or (job["status"] == "rejected" and job["reason_code"]), (
            name,
            job["status"],
            job["reason"],
        )
        texts = [job["reason"] or "", *(line["message"] for line in job["log"])]
        assert not [t for t in texts if EXCEPTION_TEXT.search(t)], (name, texts)
        if job["status"] == "done":
            assert {o["kind"] for o in job["outputs"]} >= {"overlay", "summary", "sr"}, name
            assert {o["sop_instance_uid"] for o in job["outputs"]} <= delivered.keys(), name
            one_of_each = {o["kind"]: delivered[o["sop_instance_uid"]] for o in job["outputs"]}
            assert not _dciodvfy_errors(one_of_each), name
    quirky_log = " ".join(line["message"] for line in jobs["quirky"]["log"])
    for keyword in quirks.BAD_PATIENT_VALUES:
        assert f"{keyword} of the input" in quirky_log
    logs = gateway.logs() + quirky_log
    for value in ("PHIBDAY", "ALIAS", "ID-7731", "256199"):
        assert not appears(value, logs), value
    assert "BytesLengthException" not in logs
