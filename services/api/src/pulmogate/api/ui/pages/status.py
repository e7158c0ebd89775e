"""Services, queues, disk and whether new images are accepted."""

from fastapi import APIRouter, Request, Response

from pulmogate.api.ui.backend import Backend
from pulmogate.api.ui.pages.kit import render, whoami

router = APIRouter(include_in_schema=False)


@router.get("/status")
async def status_page(request: Request) -> Response:
    """Services, queues, disk and the receiver's policy."""
    me = await whoami(request)
    async with Backend(request) as api:
        status = await api.get("/status")
    return render(
        request,
        "status.html",
        me,
        status=status.data if status.ok else None,
        load_error=status.error,
    )
