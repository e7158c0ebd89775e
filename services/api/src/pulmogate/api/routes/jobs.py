"""GET /api/v1/jobs, /api/v1/jobs/{id}, /api/v1/jobs/{id}/log."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from pulmogate.api.crud import jobs as crud
from pulmogate.api.deps import SessionDep
from pulmogate.api.routes.responses import not_found
from pulmogate.api.schemas import JobDetail, JobLogLine, JobSummary, Page
from pulmogate.common.db.models import JobStatus

router = APIRouter(prefix="/jobs", tags=["jobs"])

NOT_FOUND = not_found("job")


@router.get("", response_model=Page[JobSummary])
async def list_jobs(
    session: SessionDep,
    status: Annotated[list[JobStatus] | None, Query(description="Repeat to match several")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    q: Annotated[
        str | None,
        Query(
            max_length=100,
            description="Finds the series by patient ID, patient name (case- and "
            "accent-insensitive), accession number, Study or Series Instance UID, study date "
            "(20260301, 2026-03-01 or 01.03.2026), calling AE, source IP, study or series "
            "description",
        ),
    ] = None,
    received_from: Annotated[
        date | None, Query(description="Series first received on or after this day (UTC)")
    ] = None,
    received_to: Annotated[
        date | None, Query(description="Series first received on or before this day (UTC)")
    ] = None,
) -> Page[JobSummary]:
    """Jobs, newest first, one page at a time."""
    return await crud.list_jobs(
        session,
        statuses=status or [],
        limit=limit,
        offset=offset,
        text=q or "",
        received_from=received_from,
        received_to=received_to,
    )


@router.get("/{job_id}", response_model=JobDetail, responses=NOT_FOUND)
async def get_job(job_id: int, session: SessionDep) -> JobDetail:
    """One job with its figures, timings, outputs and deliveries."""
    return crud.job_detail(await crud.get_job(session, job_id))


@router.get("/{job_id}/log", response_model=list[JobLogLine], responses=NOT_FOUND)
async def get_job_log(job_id: int, session: SessionDep) -> list[JobLogLine]:
    """The job's log lines, oldest first."""
    return await crud.job_log(session, job_id)
