"""What an operator does to a job: resend its results, analyse it again, delete it, pack its
results as a zip. Each has a defined answer in every job state (docs/api.md)."""

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from pulmogate.api.errors import Conflict, NotFound
from pulmogate.api.operations_schemas import ReanalyseResult, ResendResult
from pulmogate.api.previews import PICTURE_KINDS
from pulmogate.common.db.models import (
    DeliveryStatus,
    Instance,
    Job,
    JobStatus,
    OutputObject,
    Series,
)
from pulmogate.common.events import ReanalysisRequested
from pulmogate.common.joblog import add_log
from pulmogate.common.lifecycle import analysis_gone, plan_resend
from pulmogate.common.metrics import JOB_RESENDS
from pulmogate.common.outbox import enqueue
from pulmogate.common.storage import Storage

log = structlog.get_logger("pulmogate.api")

SERVICE = "api"


async def _job(session: AsyncSession, job_id: int, *, lock: bool = False) -> Job:
    query = (
        select(Job)
        .where(Job.id == job_id)
        .options(selectinload(Job.outputs), selectinload(Job.deliveries))
    )
    if lock:
        query = query.with_for_update(of=Job)
    job = (await session.scalars(query)).unique().one_or_none()
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def _analysing(job: Job) -> str | None:
    """Why the job is busy with its analysis (live process, or queued), else None."""
    if job.status == JobStatus.QUEUED:
        return f"job {job.id} is queued for analysis"
    if job.status == JobStatus.ANALYSING:
        if analysis_gone(job):
            return (
                f"job {job.id}'s analysis was interrupted (its process is gone); "
                "it is queued again within 30 s"
            )
        return f"job {job.id} is being analysed" + (f" by {job.worker}" if job.worker else "")
    return None


def _sending(job: Job) -> str | None:
    """Which delivery is being sent right now, else None."""
    for delivery in job.deliveries:
        if delivery.status == DeliveryStatus.SENDING:
            return f"job {job.id}'s results are being sent (delivery {delivery.id})"
    return None


async def resend(session: AsyncSession, job_id: int, user: str) -> ResendResult:
    """Announce a new delivery of the job's results to each destination (its rule's, current).

    Existing deliveries start again from attempt 0; destinations added to the rule since get
    a new delivery (``plan_resend``, the planning the router does for new results). The
    job is DELIVERING until the sender finishes it; ``finished_at`` (and so the total time)
    stays that of the first delivery, the resend is counted apart.
    """
    job = await _job(session, job_id, lock=True)
    if job.purged_at is not None:
        raise Conflict(f"job {job_id} was purged by retention: its results are gone")
    busy = _analysing(job)
    if busy:
        raise Conflict(f"{busy}: its results are sent when the analysis ends")
    if not job.outputs:
        why = f" ({job.reason})" if job.reason else ""
        raise Conflict(
            f"job {job_id} has no results to send (status {job.status}{why}); "
            f"POST /api/v1/jobs/{job_id}/reanalyse checks and analyses it again"
        )
    sending = _sending(job)
    if sending:
        raise Conflict(f"{sending}: resend when it has ended")
    deliveries = await plan_resend(session, job)
    if not deliveries:
        raise Conflict(f"job {job_id} has no destinations to send to")
    await session.flush()
    names = []
    for delivery in deliveries:
        await session.refresh(delivery, ["destination"])
        names.append(delivery.destination.name)
    add_log(session, job.id, SERVICE, f"resend requested by {user} to {', '.join(names)}")
    await session.commit()
    JOB_RESENDS.inc()
    return ResendResult(job_id=job.id, delivery_ids=[d.id for d in deliveries], destinations=names)


async def reanalyse(session: AsyncSession, job_id: int, user: str) -> ReanalyseResult:
    """Ask the router to check and analyse the job again on every instance its series holds
    now (history kept: the log, the deliveries; the results are replaced)."""
    job = await _job(session, job_id, lock=True)
    if job.purged_at is not None:
        raise Conflict(f"job {job_id} was purged by retention: its instances are gone")
    busy = None if analysis_gone(job) else _analysing(job)
    if busy:
        raise Conflict(f"{busy}: it is analysed on every instance received so far")
    sending = _sending(job)
    if sending:
        raise Conflict(f"{sending}: ask again when it has ended")
    series = await session.get(Series, job.series_id)
    instances = series.instance_count if series is not None else 0
    add_log(session, job.id, SERVICE, f"re-analysis requested by {user} ({instances} instances)")
    enqueue(session, ReanalysisRequested(job_id=job.id, requested_by=user[:100]))
    await session.commit()
    return ReanalyseResult(job_id=job.id, status=job.status, instances=instances)


async def stored_paths(session: AsyncSession, job: Job) -> list[Path]:
    """Every stored input and output file of a job."""
    inputs = await session.scalars(select(Instance.path).where(Instance.series_id == job.series_id))
    outputs = await session.scalars(select(OutputObject.path).where(OutputObject.job_id == job.id))
    return [Path(p) for p in [*inputs, *outputs]]


def remove_files(paths: list[Path], storage: Storage) -> None:
    """Delete files (the results folder of a job goes with its last file)."""
    for path in paths:
        if not storage.remove(path):
            log.warning("not deleting a file outside storage", path=str(path))


async def delete_job(session: AsyncSession, storage: Storage, job_id: int, user: str) -> None:
    """Delete the job, its series, their rows and their files, in any state but while a
    live process analyses it (a queued job's request then finds no job; an analysis whose
    process is gone is simply deleted)."""
    job = await _job(session, job_id, lock=True)
    if job.status == JobStatus.ANALYSING and not analysis_gone(job):
        busy = _analysing(job)
        raise Conflict(f"{busy}: delete it when the analysis has ended")
    paths = await stored_paths(session, job)
    series_id = job.series_id
    await session.delete(job)
    await session.flush()
    await session.execute(delete(Series).where(Series.id == series_id))
    await session.commit()
    remove_files(paths, storage)
    storage.remove_results(job_id)
    log.info("job deleted", job_id=job_id, user=user, files=len(paths))


@dataclass(frozen=True)
class ResultFile:
    """One output object to pack."""

    kind: str
    path: Path


async def picture_path(session: AsyncSession, job_id: int, output_id: int) -> Path:
    """The file of one of the job's pictures (summary, notice or overlay), or NotFound."""
    await _job(session, job_id)
    path = await session.scalar(
        select(OutputObject.path).where(
            OutputObject.id == output_id,
            OutputObject.job_id == job_id,
            OutputObject.kind.in_(PICTURE_KINDS),
        )
    )
    if path is None:
        raise NotFound("no such image")
    return Path(path)


async def get_job_for_zip(session: AsyncSession, job_id: int) -> list[ResultFile]:
    """The job's output files in order, or why there are none to download."""
    job = await _job(session, job_id)
    if job.purged_at is not None:
        raise Conflict(f"job {job_id} was purged by retention: its results are gone")
    outputs = sorted(job.outputs, key=lambda o: o.id)
    if not outputs:
        raise Conflict(f"job {job_id} has no results (status {job.status})")
    return [ResultFile(o.kind, Path(o.path)) for o in outputs]


def pack_results(job_id: int, files: list[ResultFile]) -> Path:
    """A temporary zip of the files as ``job-<id>/<kind>/<n>.dcm`` (the caller deletes it;
    blocking: run it in a thread). On disk, not in memory: an overlay series can be large."""
    fd, name = tempfile.mkstemp(prefix=f"pulmogate-job-{job_id}-", suffix=".zip")
    path = Path(name)
    counts: dict[str, int] = {}
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for item in files:
                if not item.path.is_file():
                    raise Conflict(
                        f"job {job_id}: a {item.kind} result file is missing from storage"
                    )
                counts[item.kind] = counts.get(item.kind, 0) + 1
                archive.write(item.path, f"job-{job_id}/{item.kind}/{counts[item.kind]:04d}.dcm")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
