"""GET /api/v1/jobs, /jobs/{id} and /jobs/{id}/log against a fresh Postgres database."""

from datetime import timedelta

import httpx

from pulmogate.common.db.accounts import Role
from services.api.tests.conftest import ClientAs
from services.api.tests.rows import PATIENT_ID, PATIENT_NAME, T0, MakeJob


async def test_jobs_are_listed_newest_first_with_the_total_and_pages(
    client: httpx.AsyncClient, make_job: MakeJob
) -> None:
    ids = [await make_job(created_at=T0 + timedelta(minutes=i)) for i in range(5)]

    first = (await client.get("/api/v1/jobs", params={"limit": 2})).json()
    second = (await client.get("/api/v1/jobs", params={"limit": 2, "offset": 2})).json()
    last = (await client.get("/api/v1/jobs", params={"limit": 2, "offset": 4})).json()

    assert first["total"] == second["total"] == last["total"] == 5
    assert (first["limit"], first["offset"]) == (2, 0)
    pages = [j["id"] for page in (first, second, last) for j in page["items"]]
    assert pages == list(reversed(ids))


async def test_jobs_can_be_filtered_by_one_or_several_statuses(
    client: httpx.AsyncClient, make_job: MakeJob
) -> None:
    done = await make_job(status="done")
    failed = await make_job(status="failed", created_at=T0 + timedelta(minutes=1))
    await make_job(status="queued", created_at=T0 + timedelta(minutes=2))

    only_done = (await client.get("/api/v1/jobs", params={"status": "done"})).json()
    finished = (
        await client.get("/api/v1/jobs", params=[("status", "done"), ("status", "failed")])
    ).json()

    assert [j["id"] for j in only_done["items"]] == [done] and only_done["total"] == 1
    assert [j["id"] for j in finished["items"]] == [failed, done] and finished["total"] == 2


async def test_an_unknown_status_filter_or_bad_paging_is_a_422_naming_the_parameter(
    client: httpx.AsyncClient,
) -> None:
    bad_status = await client.get("/api/v1/jobs", params={"status": "exploded"})
    bad_limit = await client.get("/api/v1/jobs", params={"limit": 0})
    bad_offset = await client.get("/api/v1/jobs", params={"offset": -1})

    assert bad_status.status_code == bad_limit.status_code == bad_offset.status_code == 422
    assert bad_status.json()["detail"][0]["loc"] == ["query", "status", 0]
    assert bad_limit.json()["detail"][0]["loc"] == ["query", "limit"]
    assert bad_offset.json()["detail"][0]["loc"] == ["query", "offset"]


async def test_job_detail_has_times_figures_outputs_deliveries_and_timings(
    client: httpx.AsyncClient, make_job: MakeJob
) -> None:
    job_id = await make_job(
        status="done",
        prediction="CT signs of viral pneumonia, CT-2 (32 % of lung volume)",
        grade=2,
        percent=32.0,
        figures={"total": {"lesion_ml": 1100.0, "lung_ml": 3400.0}},
        timings={"load": 0.8, "segment": 2.1, "render": 1.0, "encode": 0.4},
        model_name="qct",
        model_version="1.0.0",
        analysis_started_at=T0 + timedelta(seconds=1),
        analysis_finished_at=T0 + timedelta(seconds=5.5),
        finished_at=T0 + timedelta(seconds=8),
        outputs=[
            {
                "kind": "overlay",
                "sop_instance_uid": "1.2.3.1",
                "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7",
                "series_uid": "1.2.3",
            },
            {
                "kind": "sr",
                "sop_instance_uid": "1.2.4.1",
                "sop_class_uid": "1.2.840.10008.5.1.4.1.1.88.22",
                "series_uid": "1.2.4",
            },
        ],
        deliveries=[
            {
                "destination": {
                    "name": "PACS",
                    "host": "10.0.0.9",
                    "port": 104,
                    "ae_title": "PACS",
                },
                "status": "delivered",
                "attempts": 1,
                "delivered_at": T0 + timedelta(seconds=8),
            },
            {
                "destination": {"name": "WS", "host": "10.0.0.7", "port": 11112, "ae_title": "WS1"},
                "status": "retrying",
                "attempts": 2,
                "last_error": "association rejected by WS1",
            },
        ],
    )

    response = await client.get(f"/api/v1/jobs/{job_id}")

    assert response.status_code == 200
    job = response.json()
    assert job["id"] == job_id and job["status"] == "done" and job["grade"] == 2
    assert job["prediction"].startswith("CT signs of viral pneumonia")
    assert job["processing_time_s"] == 4.5
    assert job["total_time_s"] == 18.0  # finished 8 s after creation, first slice 10 s before
    assert job["model_name"] == "qct" and job["model_version"] == "1.0.0"
    assert job["timings"] == {"load": 0.8, "segment": 2.1, "render": 1.0, "encode": 0.4}
    assert job["figures"]["total"]["lesion_ml"] == 1100.0
    assert (job["calling_ae"], job["peer_ip"], job["called_ae"]) == (
        "CT_SCANNER",
        "10.1.2.3",
        "PULMOGATE",
    )
    assert job["study_description"] == "CT CHEST" and job["series_description"] == "AXIAL 1.0"
    assert job["series_uid"].startswith("1.2.826.0.1.") and job["study_uid"]
    assert [(o["kind"], o["sop_instance_uid"], o["series_uid"]) for o in job["outputs"]] == [
        ("overlay", "1.2.3.1", "1.2.3"),
        ("sr", "1.2.4.1", "1.2.4"),
    ]
    pacs, ws = job["deliveries"]
    assert pacs["destination"] | {"id": 0} == {
        "id": 0,
        "name": "PACS",
        "ae_title": "PACS",
        "host": "10.0.0.9",
        "port": 104,
    }
    assert (pacs["status"], pacs["attempts"], pacs["last_error"]) == ("delivered", 1, None)
    assert pacs["delivered_at"].startswith("2026-03-01T08:00:08")
    assert (ws["status"], ws["attempts"]) == ("retrying", 2)
    assert ws["last_error"] == "association rejected by WS1" and ws["delivered_at"] is None
    assert job["delivery_counts"] == {"delivered": 1, "retrying": 1}


async def test_unfinished_jobs_have_no_times_yet(
    client: httpx.AsyncClient, make_job: MakeJob
) -> None:
    job_id = await make_job(status="analysing", analysis_started_at=T0)

    job = (await client.get(f"/api/v1/jobs/{job_id}")).json()

    assert job["processing_time_s"] is None and job["total_time_s"] is None
    assert job["outputs"] == [] and job["deliveries"] == [] and job["delivery_counts"] == {}


async def test_every_role_sees_the_patient_and_study_of_a_job_and_anonymous_nothing(
    client_as: ClientAs, anonymous: httpx.AsyncClient, make_job: MakeJob
) -> None:
    """Operators find a patient's job and radiologists see whose it is (they may download
    its results, which carry the same values); no one signed out sees anything."""
    job_id = await make_job()
    for role in (Role.VIEWER, Role.OPERATOR, Role.ADMIN):
        client = await client_as(role)
        [row] = (await client.get("/api/v1/jobs")).json()["items"]
        detail = (await client.get(f"/api/v1/jobs/{job_id}")).json()
        for shown in (row, detail):
            assert shown["patient_name"] == PATIENT_NAME and shown["patient_id"] == PATIENT_ID
            assert shown["received_at"] == "2026-03-01T07:59:50Z"
    for path in ("/api/v1/jobs", f"/api/v1/jobs/{job_id}", "/api/v1/arrivals"):
        refused = await anonymous.get(path)
        assert refused.status_code == 401
        assert PATIENT_NAME not in refused.text and PATIENT_ID not in refused.text


async def test_job_log_lines_come_back_in_order(
    client: httpx.AsyncClient, make_job: MakeJob
) -> None:
    job_id = await make_job(
        logs=[
            ("info", "router", "matched rule chest"),
            ("info", "inference", "analysis finished in 4.5 s"),
            ("warning", "sender", "WS1 refused the association, retrying"),
        ]
    )

    response = await client.get(f"/api/v1/jobs/{job_id}/log")

    assert response.status_code == 200
    lines = response.json()
    assert [(ln["level"], ln["service"], ln["message"]) for ln in lines] == [
        ("info", "router", "matched rule chest"),
        ("info", "inference", "analysis finished in 4.5 s"),
        ("warning", "sender", "WS1 refused the association, retrying"),
    ]
    assert lines[0]["at"].startswith("2026-03-01T08:00:00")


async def test_an_unknown_job_is_a_404_with_a_clear_message(client: httpx.AsyncClient) -> None:
    detail = await client.get("/api/v1/jobs/987654")
    log = await client.get("/api/v1/jobs/987654/log")

    assert detail.status_code == log.status_code == 404
    assert detail.json() == {"detail": "job 987654 not found"}
    assert log.json() == {"detail": "job 987654 not found"}
