"""GET /api/v1/jobs?q= finds jobs by source or description; the results page filters with it."""

import httpx
from sqlalchemy import select

from pulmogate.common.db.models import Job, Series
from pulmogate.common.runtime import Context
from services.api.tests.rows import MakeJob


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
