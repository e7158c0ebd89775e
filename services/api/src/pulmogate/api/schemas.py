"""Request and response models of the REST API (separate from the ORM models)."""

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from pulmogate.api.validators import (
    AETitle,
    DescriptionFilter,
    Host,
    Name,
    OptionalAETitle,
    Port,
    SourceIp,
)
from pulmogate.common.dicom.encoding import DEFAULT_IMAGE_ENCODING, ImageEncoding

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a listing, with the total count of matching items."""

    items: list[T]
    total: int
    limit: int
    offset: int


# --- destinations -------------------------------------------------------------------------


class DestinationBase(BaseModel):
    """A DICOM peer that receives results."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    host: Host
    port: Port
    ae_title: AETitle
    enabled: bool = True
    image_encoding: ImageEncoding = Field(
        DEFAULT_IMAGE_ENCODING,
        description="how the overlay and summary pictures are sent: jpeg (lossy, JPEG "
        "Baseline quality 90), jpeg-ls or rle (lossless) or uncompressed; the sender "
        "proposes it and uncompressed, and sends uncompressed when it is refused",
    )


class DestinationCreate(DestinationBase):
    """Body of POST /destinations."""


class DestinationUpdate(BaseModel):
    """Body of PATCH /destinations/{id}: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    host: Host | None = None
    port: Port | None = None
    ae_title: AETitle | None = None
    enabled: bool | None = None
    image_encoding: ImageEncoding | None = None


class DestinationOut(BaseModel):
    """A stored destination (output models trust the database: no input checks)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    host: str
    port: int
    ae_title: str
    enabled: bool
    image_encoding: str


# --- routing rules ------------------------------------------------------------------------


class RuleBase(BaseModel):
    """Which series are analysed and where the results go."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    enabled: bool = True
    priority: int = 100
    source_ip: SourceIp = None
    source_ae_title: OptionalAETitle = None
    study_description_filter: DescriptionFilter = ".*"
    series_description_filter: DescriptionFilter = ".*"
    ttl_days: int = Field(30, ge=1)
    failure_notices: bool = Field(
        True,
        description="When a job of this rule is rejected or fails, send its destinations a "
        "'PulmoGate: analysis not performed' page and SR into the study",
    )
    destination_ids: list[int] = Field(default_factory=list)


class RuleCreate(RuleBase):
    """Body of POST /rules."""


class RuleUpdate(BaseModel):
    """Body of PATCH /rules/{id}: only the fields given change (null clears an optional one)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    enabled: bool | None = None
    priority: int | None = None
    source_ip: SourceIp = None
    source_ae_title: OptionalAETitle = None
    study_description_filter: DescriptionFilter | None = None
    series_description_filter: DescriptionFilter | None = None
    ttl_days: int | None = Field(None, ge=1)
    failure_notices: bool | None = None
    destination_ids: list[int] | None = None


class RuleOut(BaseModel):
    """A stored rule with its destinations."""

    id: int
    name: str
    enabled: bool
    priority: int
    source_ip: str | None
    source_ae_title: str | None
    study_description_filter: str
    series_description_filter: str
    ttl_days: int
    failure_notices: bool
    destination_ids: list[int]
    destinations: list[DestinationOut]


# --- jobs ---------------------------------------------------------------------------------


class JobSummary(BaseModel):
    """A job as the results table lists it, with the patient and study it is for (every
    role that may read jobs sees them; retention blanks them with ``purged_at``)."""

    id: int
    status: str
    reason_code: str | None
    reason: str | None
    prediction: str | None
    grade: int | None
    percent: float | None
    model_name: str | None
    model_version: str | None
    processing_time_s: float | None = Field(
        description="analysis_finished_at - analysis_started_at"
    )
    total_time_s: float | None = Field(
        description="finished_at - the first instance of the series received"
    )
    created_at: datetime
    finished_at: datetime | None = Field(
        description="When the job became final (a resend keeps it; a re-analysis clears it)"
    )
    calling_ae: str = Field(description="Who sent the series (source)")
    called_ae: str
    peer_ip: str
    study_uid: str
    series_uid: str
    study_description: str
    series_description: str
    modality: str
    instance_count: int
    received_at: datetime = Field(description="When the first instance of the series arrived")
    patient_name: str = Field(description="PatientName of the series")
    patient_id: str = Field(description="PatientID of the series")
    accession_number: str
    study_date: str = Field(description="StudyDate (YYYYMMDD)")
    analysed_instance_count: int | None = Field(
        None,
        description="Instances the job's outcome was decided on (fewer than instance_count: "
        "it is being checked and analysed again)",
    )
    resend_count: int = Field(0, description="Resends of the results requested")
    resent_at: datetime | None = Field(None, description="The last resend requested")
    delivery_counts: dict[str, int] = Field(
        description="Deliveries of this job by status, e.g. {'delivered': 2, 'retrying': 1}"
    )
    purged_at: datetime | None = Field(
        None, description="When retention deleted the job's stored files (null: still held)"
    )


class ArrivalOut(BaseModel):
    """A series the receiver is still receiving (or holds complete, not yet a job)."""

    series_id: int
    status: str = Field(description="receiving, or complete (waiting for the router)")
    instance_count: int = Field(description="Instances received so far")
    received_at: datetime = Field(description="When its first instance arrived")
    last_received_at: datetime
    calling_ae: str
    peer_ip: str
    study_uid: str
    series_uid: str
    study_description: str
    series_description: str
    modality: str
    patient_name: str
    patient_id: str
    accession_number: str
    study_date: str


class OutputOut(BaseModel):
    """A result object written by inference."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    sop_instance_uid: str
    series_uid: str


class DeliveryDestination(BaseModel):
    """Where a delivery goes."""

    id: int
    name: str
    ae_title: str
    host: str
    port: int


class DeliveryOut(BaseModel):
    """Sending the job's outputs to one destination."""

    id: int
    destination: DeliveryDestination
    status: str
    attempts: int
    last_error: str | None
    delivered_at: datetime | None
    next_attempt_at: datetime | None


class JobDetail(JobSummary):
    """Everything about one job."""

    rule_id: int | None
    attempts: int
    figures: dict[str, Any]
    timings: dict[str, Any]
    updated_at: datetime
    analysis_started_at: datetime | None
    analysis_finished_at: datetime | None
    outputs: list[OutputOut]
    deliveries: list[DeliveryOut]


class JobLogLine(BaseModel):
    """One line of a job's log."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime
    level: str
    service: str
    message: str


# --- health -------------------------------------------------------------------------------


class Health(BaseModel):
    """Liveness answer."""

    status: str


class Readiness(BaseModel):
    """Readiness answer: each dependency and whether it answered."""

    status: str
    checks: dict[str, str]


class ErrorMessage(BaseModel):
    """Body of a 404/409/503 answer."""

    detail: str
