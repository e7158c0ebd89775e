"""A failure notice sent again (POST /jobs/{id}/resend) leaves the job's outcome as it was."""

import httpx
from sqlalchemy import select

from pulmogate.common.db.models import Delivery, Job
from pulmogate.common.runtime import Context
from services.api.tests.rows import T0, MakeJob


async def test_resending_a_failure_notice_keeps_the_job_rejected_with_its_reason(
    client: httpx.AsyncClient, ctx: Context, make_job: MakeJob
) -> None:
    job_id = await make_job(
        status="rejected",
        reason_code="SLICE_TOO_THICK",
        reason="slice thickness 5.0 mm exceeds the 2.5 mm limit",
        finished_at=T0,
        outputs=[
            {
                "kind": kind,
                "sop_instance_uid": f"2.25.77{n}",
                "sop_class_uid": "1.2",
                "series_uid": f"2.25.78{n}",
            }
            for n, kind in enumerate(("notice", "noticesr"))
        ],
        deliveries=[
            {
                "destination": {"name": "pacs", "host": "h", "port": 104, "ae_title": "PACS"},
                "status": "delivered",
                "attempts": 1,
            }
        ],
    )

    response = await client.post(f"/api/v1/jobs/{job_id}/resend")

    assert response.status_code == 200, response.text
    async with ctx.db.session() as session:
        job = await session.get(Job, job_id)
        deliveries = (
            await session.scalars(select(Delivery).where(Delivery.job_id == job_id))
        ).all()
    assert job is not None
    assert (job.status, job.reason_code) == ("rejected", "SLICE_TOO_THICK")
    assert job.finished_at is not None
    assert [d.status for d in deliveries] == ["pending"]
