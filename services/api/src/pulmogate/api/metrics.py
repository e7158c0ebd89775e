"""API metrics: job counts by status, refreshed at each scrape."""

from prometheus_client import Gauge

from pulmogate.common.db.models import JobStatus

JOBS_BY_STATUS = Gauge("pulmogate_jobs", "Jobs in the database by status", ["status"])


def set_job_counts(counts: dict[str, int]) -> None:
    """Publish the current counts (every known status, zero when absent)."""
    for status in [*JobStatus, *counts]:
        JOBS_BY_STATUS.labels(status=str(status)).set(counts.get(str(status), 0))
