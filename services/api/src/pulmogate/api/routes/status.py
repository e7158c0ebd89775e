"""GET /api/v1/status: which services beat recently, queue depths, disk use and the watermark."""

import asyncio

from fastapi import APIRouter
from sqlalchemy import select

from pulmogate.api.crud.jobs import count_by_status
from pulmogate.api.deps import ContextDep, SessionDep, UserDep
from pulmogate.api.operations_schemas import DiskState, ServiceState, SystemStatus
from pulmogate.common.db.models import utcnow
from pulmogate.common.db.operations import ServiceHeartbeat
from pulmogate.common.disk import disk_usage
from pulmogate.common.heartbeat import DOWN_AFTER
from pulmogate.common.runtime import Context

router = APIRouter(tags=["status"])

QUEUES_TIMEOUT_S = 5.0


async def disk_state(ctx: Context) -> DiskState:
    """Use of the storage volume against ``disk_max_used_percent``, with a sentence."""
    limit = ctx.settings.disk_max_used_percent
    usage = await asyncio.to_thread(disk_usage, ctx.storage.root)
    used = usage.used_percent
    accepting = used <= limit
    message = (
        f"storage {used:.1f} % full (limit {limit:g} %)"
        if accepting
        else f"storage {used:.1f} % full, above the {limit:g} % limit: the receiver answers "
        "C-STORE with 0xA700 (out of resources) and uploads are refused until space is freed"
    )
    return DiskState(
        path=str(ctx.storage.root),
        used_percent=round(used, 2),
        max_used_percent=limit,
        total_bytes=usage.total_bytes,
        free_bytes=usage.free_bytes,
        accepting=accepting,
        message=message,
    )


async def system_status(ctx: Context, session: SessionDep) -> SystemStatus:
    """Everything the status page shows."""
    now = utcnow()
    beats = (await session.scalars(select(ServiceHeartbeat).order_by(ServiceHeartbeat.name))).all()
    services = [
        ServiceState(
            name=b.name,
            host=b.host,
            pid=b.pid,
            up=now - b.seen_at <= DOWN_AFTER,
            seen_at=b.seen_at,
            detail=b.detail,
        )
        for b in beats
    ]
    queues: dict[str, int] = {}
    error = None
    try:
        queues = await asyncio.wait_for(ctx.bus.queue_depths(), QUEUES_TIMEOUT_S)
    except Exception as exc:
        error = f"queue depths unavailable: {type(exc).__name__}: {exc}"[:300]
    return SystemStatus(
        services=services,
        queues=queues,
        queues_error=error,
        disk=await disk_state(ctx),
        accept_from=ctx.settings.accept_from,
        jobs_by_status=await count_by_status(session),
    )


@router.get("/status", response_model=SystemStatus)
async def get_status(ctx: ContextDep, session: SessionDep, _user: UserDep) -> SystemStatus:
    """Services (last heartbeat), queue depths, disk use and whether new data is accepted."""
    return await system_status(ctx, session)
