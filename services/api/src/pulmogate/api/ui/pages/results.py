"""The results table, a job's page with previews, resend, re-analysis, delete, and the
new-task page."""

from typing import Any

from fastapi import APIRouter, Request, Response

from pulmogate.api.ui.backend import Backend
from pulmogate.api.ui.pages.kit import (
    back,
    form_fields,
    outcome,
    render,
    say,
    whoami,
)
from pulmogate.common.db.models import FINAL_JOB_STATUSES, JobStatus

PAGE_SIZE = 25
REFRESH_S = 5  # while a series arrives or a job is in progress
PREVIEW_OVERLAYS = 4

router = APIRouter(include_in_schema=False)


# --- results ------------------------------------------------------------------------------


@router.get("/jobs")
async def jobs_page(request: Request) -> Response:
    """The results table: filters by status, text and received days, pages of
    ``PAGE_SIZE``; the series still arriving above it on the first page. The page reloads
    itself while something is arriving or in progress."""
    me = await whoami(request)
    query = request.query_params
    filters = {
        "status": query.get("status", ""),
        "q": query.get("q", "")[:100],
        "received_from": query.get("received_from", "")[:10],
        "received_to": query.get("received_to", "")[:10],
    }
    try:
        page = max(1, int(query.get("page", "1")))
    except ValueError:
        page = 1
    params: dict[str, Any] = {"limit": PAGE_SIZE, "offset": (page - 1) * PAGE_SIZE}
    params.update({key: value for key, value in filters.items() if value})
    async with Backend(request) as api:
        listing = await api.get("/jobs", params=params)
        arriving = await api.get("/arrivals") if page == 1 else None
    data: dict[str, Any] = listing.data if listing.ok else {"items": [], "total": 0}
    arrivals = arriving.data if arriving is not None and arriving.ok else []
    total = int(data["total"])
    pages = max(1, -(-total // PAGE_SIZE))
    busy = arrivals or any(job["status"] not in FINAL_JOB_STATUSES for job in data["items"])
    return render(
        request,
        "jobs.html",
        me,
        jobs=data["items"],
        arrivals=arrivals,
        total=data["total"],
        page=page,
        pages=pages,
        filters=filters,
        **filters,
        statuses=[s.value for s in JobStatus],
        load_error=listing.error,
        refresh=REFRESH_S if busy else 0,
    )


@router.get("/jobs/{job_id}")
async def job_page(job_id: int, request: Request) -> Response:
    """One job: figures, log, stage timings, deliveries, key images."""
    me = await whoami(request)
    async with Backend(request) as api:
        job = await api.get(f"/jobs/{job_id}")
        log = await api.get(f"/jobs/{job_id}/log")
    if not job.ok:
        return back("/jobs", error=job.error)
    previews = _preview_ids(job.data["outputs"])
    in_progress = job.data["status"] not in FINAL_JOB_STATUSES
    return render(
        request,
        "job.html",
        me,
        job=job.data,
        log=log.data or [],
        previews=previews,
        refresh=REFRESH_S if in_progress else 0,
    )


def _preview_ids(outputs: list[dict[str, Any]]) -> list[int]:
    """The outputs (of the job's API answer, in id order) shown as key images: the summary
    page (or the failure notice page) and a few overlay slices."""
    summary = [o["id"] for o in outputs if o["kind"] in ("summary", "notice")]
    overlay = [o["id"] for o in outputs if o["kind"] == "overlay"]
    if len(overlay) > PREVIEW_OVERLAYS:
        # Evenly spaced through the middle of the lungs, where lesions show best.
        step = len(overlay) / (PREVIEW_OVERLAYS + 1)
        overlay = [overlay[int(step * (k + 1))] for k in range(PREVIEW_OVERLAYS)]
    return summary[:1] + overlay


@router.get("/jobs/{job_id}/preview/{output_id}.png")
async def preview(job_id: int, output_id: int, request: Request) -> Response:
    """A key image of the job as PNG (any signed-in user who may read jobs)."""
    await whoami(request)
    async with Backend(request) as api:
        image = await api.get(f"/jobs/{job_id}/outputs/{output_id}/preview.png")
    if not image.ok:
        return Response(image.error, status_code=image.status, media_type="text/plain")
    return Response(
        image.content, media_type="image/png", headers={"Cache-Control": "private, max-age=300"}
    )


@router.post("/jobs/{job_id}/resend")
async def resend(job_id: int, request: Request) -> Response:
    """Resend the job's results to its destinations."""
    _, token = await form_fields(request)
    async with Backend(request, token) as api:
        answer = await api.call("POST", f"/jobs/{job_id}/resend")
    names = ", ".join(answer.data.get("destinations", [])) if answer.ok else ""
    return outcome(answer, f"/jobs/{job_id}", say(request, "resend_requested", names=names))


@router.post("/jobs/{job_id}/reanalyse")
async def reanalyse(job_id: int, request: Request) -> Response:
    """Check and analyse the job again on every instance of its series."""
    _, token = await form_fields(request)
    async with Backend(request, token) as api:
        answer = await api.call("POST", f"/jobs/{job_id}/reanalyse")
    instances = answer.data.get("instances", 0) if answer.ok else 0
    notice = say(request, "reanalysis_requested", instances=instances)
    return outcome(answer, f"/jobs/{job_id}", notice)


@router.post("/jobs/{job_id}/delete")
async def delete_job(job_id: int, request: Request) -> Response:
    """Delete the job with its files."""
    _, token = await form_fields(request)
    async with Backend(request, token) as api:
        answer = await api.call("DELETE", f"/jobs/{job_id}")
    if answer.ok:
        return back("/jobs", notice=say(request, "job_deleted", id=job_id))
    return back(f"/jobs/{job_id}", error=answer.error)


# --- new task -----------------------------------------------------------------------------


@router.get("/upload")
async def upload_page(request: Request) -> Response:
    """Upload a zip or DICOM files (the page script posts to /api/v1/uploads with progress)."""
    me = await whoami(request)
    async with Backend(request) as api:
        rules = await api.get("/rules")
    return render(request, "upload.html", me, rules=rules.data if rules.ok else [])
