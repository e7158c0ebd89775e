"""The job transitions every service shares: becoming final, being re-opened, who analyses.

One rule for the figures: ``finished_at`` is set, and ``pulmogate_jobs_finished_total``
counted, when a job becomes final from an open round (routing, analysis, its first
delivery). A resend of the results keeps both: the job is final once per analysis
outcome, not once per delivery. A re-opened job (more instances, a re-analysis) starts a
new round: ``finished_at`` is cleared and the next final state counts again.
"""

from collections.abc import Iterable
from datetime import datetime

from pulmogate.common.db.models import (
    FAILURE_NOTICE_KINDS,
    FINAL_JOB_STATUSES,
    NO_RESULT_STATUSES,
    Job,
    JobStatus,
    utcnow,
)
from pulmogate.common.metrics import JOBS_FINISHED, JOBS_REOPENED
from pulmogate.common.workers import worker_gone

# Re-opening a job reads its instances again: only these states may be re-opened at once.
# QUEUED reads every instance when its analysis starts; ANALYSING and a delivery being
# sent are waited for.
REOPENABLE = FINAL_JOB_STATUSES | {JobStatus.ANALYSED, JobStatus.DELIVERING}


def mark_final(
    job: Job, status: JobStatus, *, code: str | None = None, reason: str | None = None
) -> None:
    """Put ``job`` in a final state; the first time in this round, stamp and count it."""
    job.status = status
    if code is not None or reason is not None:
        job.reason_code = code
        job.reason = reason
    job.worker = None
    if job.finished_at is None:
        job.finished_at = utcnow()
        JOBS_FINISHED.labels(status=status).inc()


def reopen(job: Job, reason: str) -> None:
    """Start a new round: clear the verdict and the figures of the previous one."""
    job.finished_at = None
    job.reason_code = job.reason = None
    job.prediction = None
    job.grade = None
    job.percent = None
    job.figures = {}
    job.worker = None
    JOBS_REOPENED.labels(reason=reason).inc()


def analysis_gone(job: Job, now: datetime | None = None) -> bool:
    """An ANALYSING job whose worker no longer runs (a crash left it behind)."""
    if job.status != JobStatus.ANALYSING:
        return False
    seen = job.worker_seen_at or job.analysis_started_at or job.updated_at
    return worker_gone(job.worker, seen, now or utcnow())


def may_send(status: str, output_kinds: Iterable[str]) -> bool:
    """Whether a job's deliveries may be sent now: its results while it is DELIVERING, or
    the failure notice of a job that ended without results (it keeps its final status)."""
    if status == JobStatus.DELIVERING:
        return True
    kinds = set(output_kinds)
    return status in NO_RESULT_STATUSES and bool(kinds) and kinds <= set(FAILURE_NOTICE_KINDS)
