"""GET /api/v1/jobs?q= finds a patient's job (patient, accession, UIDs, study date, source,
descriptions), received days filter it, and /arrivals lists series still arriving."""

from datetime import timedelta

import httpx
from sqlalchemy import select

from pulmogate.common.db.models import Job, Series
from pulmogate.common.runtime import Context
from services.api.tests.rows import T0, MakeJob


async def _describe(ctx: Context, job_id: int, **fields: str) -> None:
    async with ctx.db.session() as session:
        series = await session.scalar(select(Series).join(Job).where(Job.id == job_id))
        assert series is not None
        for key, value in fields.items():
            setattr(series, key, value)


async def test_text_search_matches_source_and_descriptions_case_insensitively(
    client: httpx.AsyncClient, ctx: Context, make_job: MakeJob
) -> None:
    chest = await make_job()
    await _describe(ctx, chest, study_description="Chest low dose", calling_ae="CT_EAST")
    other = await make_job(status="failed")
    await _describe(ctx, other, study_description="Abdomen 100%", calling_ae="CT_WEST")

    async def ids(**params: str) -> list[int]:
        body = (await client.get("/api/v1/jobs", params=params)).json()
        return sorted(j["id"] for j in body["items"])

    assert await ids(q="CHEST") == [chest]
    assert await ids(q="ct_") == sorted([chest, other])
    assert await ids(q="west", status="failed") == [other]
    assert await ids(q="100%") == [other]
    assert await ids(q="10.1.2") == sorted([chest, other])
    assert await ids(q="nothing like it") == []


async def test_q_finds_a_patients_job_by_id_name_accession_uids_and_study_date(
    client: httpx.AsyncClient, ctx: Context, make_job: MakeJob
) -> None:
    """What an operator knows of a patient finds the job; names ignore case and accents."""
    muller = await make_job()
    await _describe(
        ctx,
        muller,
        patient_name="MÜLLER^JÖRG",
        patient_id="HOSP-0042",
        accession_number="ACC-77812",
        study_date="20260305",
        study_uid="1.2.276.0.7230010.3.1.2.811",
        series_uid="1.2.276.0.7230010.3.1.3.811",
    )
    other = await make_job()
    await _describe(ctx, other, patient_name="SMITH^ANNA", study_date="20260306")

    async def ids(**params: str) -> list[int]:
        response = await client.get("/api/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        return sorted(j["id"] for j in response.json()["items"])

    for q in (
        "HOSP-0042",
        "hosp-00",
        "ACC-77812",
        "müller",
        "MULLER",
        "Müller^Jörg",
        "jorg",
        "1.2.276.0.7230010.3.1.2.811",
        "1.2.276.0.7230010.3.1.3.811",
        "20260305",
        "2026-03-05",
        "05.03.2026",
    ):
        assert await ids(q=q) == [muller], q
    assert await ids(q="2026-03-06") == [other]
    assert await ids(q="2026-02-30") == []  # no such day: matched as text only
    assert await ids(q="smith") == [other]
    [row] = [j for j in (await client.get("/api/v1/jobs")).json()["items"] if j["id"] == muller]
    assert (row["patient_name"], row["patient_id"]) == ("MÜLLER^JÖRG", "HOSP-0042")
    assert (row["accession_number"], row["study_date"]) == ("ACC-77812", "20260305")


async def test_received_days_filter_the_listing(
    client: httpx.AsyncClient, make_job: MakeJob
) -> None:
    """received_from / received_to are inclusive days (UTC) of the first instance."""
    march_1 = await make_job(created_at=T0)  # received 2026-03-01 07:59:50
    march_2 = await make_job(created_at=T0 + timedelta(days=1))
    march_4 = await make_job(created_at=T0 + timedelta(days=3))

    async def ids(**params: str) -> list[int]:
        response = await client.get("/api/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        return sorted(j["id"] for j in response.json()["items"])

    assert await ids(received_from="2026-03-02") == sorted([march_2, march_4])
    assert await ids(received_to="2026-03-02") == sorted([march_1, march_2])
    assert await ids(received_from="2026-03-02", received_to="2026-03-03") == [march_2]
    assert (await client.get("/api/v1/jobs", params={"received_to": "March"})).status_code == 422


async def test_arrivals_list_series_being_received_with_their_instances_so_far(
    client: httpx.AsyncClient, ctx: Context, make_job: MakeJob
) -> None:
    """A series still arriving (no job yet) is listed with its count; routed ones are not."""
    await make_job()  # routed: a job, not an arrival
    async with ctx.db.session() as session:
        session.add(
            Series(
                series_uid="1.2.826.0.1.99.1",
                study_uid="1.2.826.0.1.99",
                patient_name="MÜLLER^JÖRG",
                patient_id="HOSP-0042",
                calling_ae="PACS",
                peer_ip="10.1.2.9",
                modality="CT",
                status="receiving",
                instance_count=37,
                first_received_at=T0,
                last_received_at=T0 + timedelta(seconds=4),
            )
        )
    arrivals = (await client.get("/api/v1/arrivals")).json()
    assert [(a["series_uid"], a["status"], a["instance_count"]) for a in arrivals] == [
        ("1.2.826.0.1.99.1", "receiving", 37)
    ]
    assert arrivals[0]["patient_name"] == "MÜLLER^JÖRG" and arrivals[0]["calling_ae"] == "PACS"
