"""``notice.requested``: build a job's failure notice, store it, and hand it to the router.

The router asks for a notice when a job of a rule with destinations (and failure notices
on) ends rejected, failed, or without a license. The notice objects are recorded as the
job's outputs (kinds ``notice`` and ``noticesr``) and announced with ``analysis.finished``
carrying the job's status unchanged; the router then plans their delivery. Idempotent: a
job that has its notice already is only announced again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select

from pulmogate.common.db.models import (
    FAILURE_NOTICE_KINDS,
    NO_RESULT_STATUSES,
    Instance,
    Job,
    OutputObject,
)
from pulmogate.common.events import AnalysisFinished
from pulmogate.common.joblog import add_log
from pulmogate.common.outbox import enqueue
from pulmogate.common.runtime import Context
from pulmogate.common.storage import atomic_write, dataset_bytes
from pulmogate.inference.stored import StoredObject

if TYPE_CHECKING:
    from pulmogate.inference.outputs.notice import NoticeFacts

log = structlog.get_logger("pulmogate.inference")

SERVICE = "inference"


def _build(ctx: Context, job_id: int, paths: list[Path], facts: NoticeFacts) -> list[StoredObject]:
    """Read the series' headers, build the notice and write its objects (worker thread)."""
    from pulmogate.inference.outputs.notice import build_notice, notice_source

    sources = [h for h in (notice_source(p) for p in paths) if h is not None]
    if not sources:
        return []
    stored = []
    for obj in build_notice(sources, facts, language=ctx.settings.language):
        ds = obj.dataset
        path = ctx.storage.result_path(job_id, obj.kind, str(ds.SOPInstanceUID))
        atomic_write(path, dataset_bytes(ds))
        stored.append(StoredObject.of(obj.kind, ds, path))
    return stored


async def make_notice(ctx: Context, job_id: int) -> None:
    """Build, store and announce the failure notice of one job."""
    from pulmogate.inference.outputs.notice import NoticeFacts

    async with ctx.db.session() as session:
        job = await session.get(Job, job_id)
        if job is None or job.status not in NO_RESULT_STATUSES:
            log.info("no failure notice: the job has results or is gone", job_id=job_id)
            return
        if await session.scalar(
            select(OutputObject.id).where(
                OutputObject.job_id == job_id, OutputObject.kind.in_(FAILURE_NOTICE_KINDS)
            )
        ):
            enqueue(session, AnalysisFinished(job_id=job_id, status=job.status))
            return
        series = job.series
        facts = NoticeFacts(
            code=job.reason_code or str(job.status).upper(),
            reason=job.reason or "",
            series_description=series.series_description,
            series_number=series.series_number,
            instance_count=series.instance_count,
        )
        decided = (job.status, job.reason_code, job.analysed_instance_count)
        status = job.status
        paths = [
            Path(p)
            for p in await session.scalars(
                select(Instance.path).where(Instance.series_id == job.series_id)
            )
        ]
    try:
        stored = await asyncio.to_thread(_build, ctx, job_id, paths, facts)
    except Exception as error:  # a notice must never hide the job's own reason
        log.error("failure notice not built", job_id=job_id, error_type=type(error).__name__)
        stored = []
    async with ctx.db.session() as session:
        job = await session.get(Job, job_id, with_for_update=ctx.db.lock(Job))
        if job is None or (job.status, job.reason_code, job.analysed_instance_count) != decided:
            # Deleted, or re-opened (more instances, a re-analysis) while it was built.
            for out in stored:
                ctx.storage.remove(out.path)
            log.info("failure notice dropped: the job changed meanwhile", job_id=job_id)
            return
        if not stored:
            add_log(
                session,
                job_id,
                SERVICE,
                "no failure notice sent: no instance of the series could be read for it",
                level="warning",
            )
            return
        session.add_all(out.row(job_id) for out in stored)
        add_log(
            session,
            job_id,
            SERVICE,
            f"failure notice built (a page and an SR, 'analysis not performed: {facts.code}')",
        )
        enqueue(session, AnalysisFinished(job_id=job_id, status=status))
    log.info("failure notice built", job_id=job_id, code=facts.code)
