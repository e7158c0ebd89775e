"""Prometheus metrics shared by the services (one registry per process)."""

import math
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from pulmogate.common.disk import disk_usage

INSTANCES_RECEIVED = Counter(
    "pulmogate_instances_received_total", "C-STORE requests answered", ["status"]
)
INSTANCES_DISCARDED = Counter(
    "pulmogate_instances_discarded_total",
    "C-STORE answered Success but not kept: not a CT series to analyse (by SOP class)",
    ["kind"],
)
SERIES_COMPLETED = Counter("pulmogate_series_completed_total", "Series announced as complete")
JOBS_FINISHED = Counter(
    "pulmogate_jobs_finished_total",
    "Jobs that became final, by state (once per analysis outcome; resends do not count)",
    ["status"],
)
JOBS_REOPENED = Counter(
    "pulmogate_jobs_reopened_total",
    "Jobs checked and analysed again (grown: more instances; resent; requested)",
    ["reason"],
)
JOB_RESENDS = Counter("pulmogate_job_resends_total", "Resends of a job's results requested")
ANALYSIS_SECONDS = Histogram(
    "pulmogate_analysis_seconds",
    "Analysis time per study",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300),
)
DELIVERIES = Counter("pulmogate_deliveries_total", "Delivery attempts by outcome", ["outcome"])
STORAGE_FREE_PERCENT = Gauge(
    "pulmogate_storage_free_percent",
    "Free space on the storage volume in percent (NaN: the volume cannot be read)",
)
DICOM_REFUSED = Counter(
    "pulmogate_dicom_refused_total",
    "DICOM connections and associations refused or aborted at the edge, by reason",
    ["reason"],
)


def track_storage(root: Path) -> None:
    """Read the storage volume's free share at each scrape (every process shares the volume)."""

    def free_percent() -> float:
        try:
            usage = disk_usage(root)
        except OSError:
            return math.nan
        return 100.0 - usage.used_percent if usage.total_bytes else math.nan

    STORAGE_FREE_PERCENT.set_function(free_percent)
