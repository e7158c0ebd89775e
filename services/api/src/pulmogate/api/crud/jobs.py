"""Jobs: the paged listing, one job with its outputs and deliveries, its log, counts by status."""

import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from pulmogate.api.errors import NotFound
from pulmogate.api.schemas import (
    DeliveryDestination,
    DeliveryOut,
    JobDetail,
    JobLogLine,
    JobSummary,
    OutputOut,
    Page,
)
from pulmogate.common.db.models import Delivery, Job, JobLog, Series
from pulmogate.common.text_search import fold

# A study date as operators type it: 20260301, 2026-03-01, 2026.03.01 or 01.03.2026.
ISO_DATE = re.compile(r"(\d{4})[-.]?(\d{2})[-.]?(\d{2})")
DAY_FIRST_DATE = re.compile(r"(\d{2})\.(\d{2})\.(\d{4})")


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    """Elapsed seconds, or None while either end is unknown."""
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def _summary_fields(job: Job) -> dict[str, object]:
    """The fields shared by the listing and the detail view."""
    series = job.series
    return {
        "id": job.id,
        "status": job.status,
        "reason_code": job.reason_code,
        "reason": job.reason,
        "prediction": job.prediction,
        "grade": job.grade,
        "percent": job.percent,
        "model_name": job.model_name,
        "model_version": job.model_version,
        "processing_time_s": _seconds(job.analysis_started_at, job.analysis_finished_at),
        "total_time_s": _seconds(series.first_received_at, job.finished_at),
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "calling_ae": series.calling_ae,
        "called_ae": series.called_ae,
        "peer_ip": series.peer_ip,
        "study_uid": series.study_uid,
        "series_uid": series.series_uid,
        "study_description": series.study_description,
        "series_description": series.series_description,
        "modality": series.modality,
        "instance_count": series.instance_count,
        "received_at": series.first_received_at,
        "patient_name": series.patient_name,
        "patient_id": series.patient_id,
        "accession_number": series.accession_number,
        "study_date": series.study_date,
        "analysed_instance_count": job.analysed_instance_count,
        "resend_count": job.resend_count or 0,
        "resent_at": job.resent_at,
        "delivery_counts": dict(Counter(d.status for d in job.deliveries)),
        "purged_at": job.purged_at,
    }


def job_summary(job: Job) -> JobSummary:
    """A listing row."""
    return JobSummary.model_validate(_summary_fields(job))


def _delivery(delivery: Delivery) -> DeliveryOut:
    dest = delivery.destination
    return DeliveryOut(
        id=delivery.id,
        destination=DeliveryDestination(
            id=dest.id, name=dest.name, ae_title=dest.ae_title, host=dest.host, port=dest.port
        ),
        status=delivery.status,
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
        next_attempt_at=delivery.next_attempt_at,
    )


def job_detail(job: Job) -> JobDetail:
    """The full view of one job."""
    return JobDetail.model_validate(
        {
            **_summary_fields(job),
            "rule_id": job.rule_id,
            "attempts": job.attempts,
            "figures": job.figures or {},
            "timings": job.timings or {},
            "updated_at": job.updated_at,
            "analysis_started_at": job.analysis_started_at,
            "analysis_finished_at": job.analysis_finished_at,
            "outputs": [
                OutputOut.model_validate(o) for o in sorted(job.outputs, key=lambda o: o.id)
            ],
            "deliveries": [_delivery(d) for d in sorted(job.deliveries, key=lambda d: d.id)],
        }
    )


def _contains(text: str) -> str:
    """A LIKE pattern for ``text`` anywhere (its own % and _ escaped with a backslash)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def study_date(text: str) -> str | None:
    """``text`` as a DICOM date (YYYYMMDD) when it is one, else None."""
    iso, day_first = ISO_DATE.fullmatch(text), DAY_FIRST_DATE.fullmatch(text)
    parts = iso.groups() if iso else day_first.groups()[::-1] if day_first else None
    if parts is None:
        return None
    try:
        return date(int(parts[0]), int(parts[1]), int(parts[2])).strftime("%Y%m%d")
    except ValueError:
        return None


def search_condition(text: str) -> ColumnElement[bool]:
    """Series that ``text`` names: found in the source (calling AE, IP), the descriptions,
    the patient ID, accession number or Study/Series Instance UID (case-insensitive), in
    the patient name (case- and accent-insensitive), or equal to the study date."""
    pattern = _contains(text)
    found: list[ColumnElement[bool]] = [
        column.ilike(pattern, escape="\\")
        for column in (
            Series.calling_ae,
            Series.peer_ip,
            Series.study_description,
            Series.series_description,
            Series.patient_id,
            Series.accession_number,
            Series.study_uid,
            Series.series_uid,
        )
    ]
    found.append(Series.patient_name_search.like(_contains(fold(text)), escape="\\"))
    day = study_date(text)
    if day is not None:
        found.append(Series.study_date == day)
    return or_(*found)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


async def list_jobs(
    session: AsyncSession,
    *,
    statuses: Sequence[str],
    limit: int,
    offset: int,
    text: str = "",
    received_from: date | None = None,
    received_to: date | None = None,
) -> Page[JobSummary]:
    """Jobs newest first, optionally only those in ``statuses``, whose series ``text``
    names (``search_condition``), or received between two days (inclusive, UTC), with
    the total count."""
    where = [Job.status.in_(list(statuses))] if statuses else []
    series: list[ColumnElement[bool]] = []
    if text.strip():
        series.append(search_condition(text.strip()))
    if received_from is not None:
        series.append(Series.first_received_at >= _day_start(received_from))
    if received_to is not None:
        series.append(Series.first_received_at < _day_start(received_to + timedelta(days=1)))
    if series:
        where.append(Job.series_id.in_(select(Series.id).where(*series)))
    total = await session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
    query = (
        select(Job)
        .where(*where)
        .options(selectinload(Job.deliveries))
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit)
        .offset(offset)
    )
    jobs = (await session.scalars(query)).unique().all()
    return Page[JobSummary](
        items=[job_summary(j) for j in jobs], total=total, limit=limit, offset=offset
    )


async def get_job(session: AsyncSession, job_id: int) -> Job:
    """One job with its outputs and deliveries, or NotFound."""
    query = (
        select(Job)
        .where(Job.id == job_id)
        .options(selectinload(Job.outputs), selectinload(Job.deliveries))
    )
    job = (await session.scalars(query)).unique().one_or_none()
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


async def job_log(session: AsyncSession, job_id: int) -> list[JobLogLine]:
    """The job's log lines in the order they were written."""
    if await session.scalar(select(Job.id).where(Job.id == job_id)) is None:
        raise NotFound(f"job {job_id} not found")
    lines = await session.scalars(
        select(JobLog).where(JobLog.job_id == job_id).order_by(JobLog.at, JobLog.id)
    )
    return [JobLogLine.model_validate(line) for line in lines]


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    """How many jobs are in each status."""
    rows = await session.execute(select(Job.status, func.count()).group_by(Job.status))
    return {status: count for status, count in rows}
