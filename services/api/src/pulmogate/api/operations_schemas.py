"""Request and response models of the operations routes: rule tester, echo, resend, uploads,
status."""

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field


def _check_ip(value: str) -> str:
    import ipaddress

    value = value.strip()
    try:
        ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValueError(f"not an IP address: {exc}") from exc
    return value


class RuleTestRequest(BaseModel):
    """Sample attributes of a series, as the receiver would see them."""

    source_ip: Annotated[str, Field(max_length=45), AfterValidator(_check_ip)] = Field(
        description="The sender's IP address (one address, not a network)"
    )
    calling_ae: str = Field("", max_length=16, description="The sender's calling AE title")
    study_description: str = Field("", max_length=200)
    series_description: str = Field("", max_length=200)


class RuleVerdict(BaseModel):
    """Why one rule does or does not take the sample."""

    id: int
    name: str
    enabled: bool
    priority: int
    matches: bool = Field(description="Enabled and every attribute accepted")
    reasons: list[str] = Field(description="What it does not accept (or 'disabled')")


class RuleTestResult(BaseModel):
    """The winning rule (if any) and every rule's verdict in matching order."""

    matched_rule_id: int | None
    matched_rule_name: str | None
    explanation: str
    rules: list[RuleVerdict]


class EchoResult(BaseModel):
    """The outcome of a C-ECHO to a destination."""

    destination_id: int
    ok: bool
    message: str
    elapsed_ms: float


class ResendResult(BaseModel):
    """Deliveries announced again for a job."""

    job_id: int
    delivery_ids: list[int]
    destinations: list[str]


class ReanalyseResult(BaseModel):
    """A re-analysis handed to the router."""

    job_id: int
    status: str = Field(description="The job's state when asked (the router re-opens it)")
    instances: int = Field(description="Instances its series holds: the analysis reads them all")


class UploadedSeries(BaseModel):
    """A series stored from an upload and announced for routing."""

    series_id: int
    series_uid: str
    instance_count: int
    rule_id: int | None


class SkippedFile(BaseModel):
    """An object of the upload that is not a CT image to analyse: not stored."""

    file: str
    reason: str


class UploadResult(BaseModel):
    """What an upload stored, and what it skipped (see ``non_ct_objects``)."""

    files: int
    series: list[UploadedSeries]
    skipped: list[SkippedFile] = []


class ServiceState(BaseModel):
    """A service process's last heartbeat."""

    name: str
    host: str
    pid: int
    up: bool
    seen_at: datetime
    detail: str


class DiskState(BaseModel):
    """Use of the storage volume and the watermark that stops C-STORE."""

    path: str
    used_percent: float
    max_used_percent: float
    total_bytes: int
    free_bytes: int
    accepting: bool
    message: str


class SystemStatus(BaseModel):
    """Services, queues, disk and what the receiver accepts."""

    services: list[ServiceState]
    queues: dict[str, int]
    queues_error: str | None
    disk: DiskState
    accept_from: str
    jobs_by_status: dict[str, int]
