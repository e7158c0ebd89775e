"""POST /api/v1/jobs/{id}/resend and /reanalyse, DELETE /api/v1/jobs/{id},
GET /api/v1/jobs/{id}/results.zip and /outputs/{output_id}/preview.png."""

import asyncio

from fastapi import APIRouter, Response, status
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from pulmogate.api.auditing import audit_change
from pulmogate.api.crud import job_actions as crud
from pulmogate.api.deps import ContextDep, OperatorDep, SessionDep, UserDep
from pulmogate.api.errors import NotFound
from pulmogate.api.operations_schemas import ReanalyseResult, ResendResult
from pulmogate.api.previews import png
from pulmogate.api.routes.responses import conflict, not_found
from pulmogate.api.schemas import ErrorMessage

router = APIRouter(prefix="/jobs", tags=["jobs"])

NOT_FOUND = not_found("job")


@router.post(
    "/{job_id}/resend",
    response_model=ResendResult,
    responses={
        **NOT_FOUND,
        **conflict(
            "No results, no destinations, queued or analysing, a delivery being sent, or purged"
        ),
    },
)
async def resend_job(job_id: int, session: SessionDep, user: OperatorDep) -> ResendResult:
    """Send the job's results again to each of its destinations (new delivery.requested)."""
    audit_change(session, user, "job.resend", f"job {job_id}")
    return await crud.resend(session, job_id, user.name)


@router.post(
    "/{job_id}/reanalyse",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReanalyseResult,
    responses={
        **NOT_FOUND,
        **conflict("Queued or being analysed, a delivery being sent, or purged"),
    },
)
async def reanalyse_job(job_id: int, session: SessionDep, user: OperatorDep) -> ReanalyseResult:
    """Check and analyse the job again on every instance of its series; the results are
    replaced and delivered again, the log and the deliveries' history stay."""
    audit_change(session, user, "job.reanalyse", f"job {job_id}")
    return await crud.reanalyse(session, job_id, user.name)


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**NOT_FOUND, **conflict("A live process is analysing the job")},
)
async def delete_job(job_id: int, session: SessionDep, ctx: ContextDep, user: OperatorDep) -> None:
    """Delete the job with its series: rows, received files and results."""
    audit_change(session, user, "job.delete", f"job {job_id}")
    await crud.delete_job(session, ctx.storage, job_id, user.name)


@router.get(
    "/{job_id}/results.zip",
    response_class=Response,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The job's output objects"},
        **NOT_FOUND,
        **conflict("No results (yet, or purged)"),
    },
)
async def download_results(job_id: int, session: SessionDep, _user: UserDep) -> Response:
    """The job's result objects (overlay, summary, SR, SEG) as one zip."""
    files = await crud.get_job_for_zip(session, job_id)
    path = await asyncio.to_thread(crud.pack_results, job_id, files)
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"pulmogate-job-{job_id}.zip",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


@router.get(
    "/{job_id}/outputs/{output_id}/preview.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "A downsized PNG of the picture"},
        404: {
            "model": ErrorMessage,
            "description": "No job with this id, or no such picture (summary, notice, overlay)",
        },
    },
)
async def preview_picture(
    job_id: int, output_id: int, session: SessionDep, _user: UserDep
) -> Response:
    """One of the job's pictures (summary, failure notice or an overlay slice) as a PNG of
    at most 384 px, for the job page's key images."""
    path = await crud.picture_path(session, job_id, output_id)
    try:
        data = await asyncio.to_thread(png, path)
    except FileNotFoundError:
        raise NotFound("no such image") from None
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})
