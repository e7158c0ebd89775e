"""ORM models: Postgres (or SQLite) is the source of truth for every state."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from pulmogate.common.text_search import fold


def utcnow() -> datetime:
    """Timezone-aware now."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with portable JSON."""


class TZDateTime(TypeDecorator[datetime]):
    """UTC timestamps that come back timezone-aware on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """SQLite drops the zone; every timestamp we write is UTC."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


E = TypeVar("E", bound=StrEnum)


class StatusColumn(TypeDecorator[E]):
    """A status column: stored as its enum's plain string (VARCHAR, the values unchanged),
    read back as the enum member."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        """A member or its string (a filter may name a status that does not exist)."""
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        """The member the stored string names."""
        return None if value is None else self.enum(value)


class SeriesStatus(StrEnum):
    RECEIVING = "receiving"
    COMPLETE = "complete"
    ROUTED = "routed"


class JobStatus(StrEnum):
    QUEUED = "queued"
    ANALYSING = "analysing"
    ANALYSED = "analysed"
    DELIVERING = "delivering"
    DONE = "done"
    IGNORED = "ignored"
    REJECTED = "rejected"
    FAILED = "failed"
    NO_LICENSE = "no_license"
    LICENSE_EXPIRED = "license_expired"


FINAL_JOB_STATUSES = frozenset(
    {
        JobStatus.DONE,
        JobStatus.IGNORED,
        JobStatus.REJECTED,
        JobStatus.FAILED,
        JobStatus.NO_LICENSE,
        JobStatus.LICENSE_EXPIRED,
    }
)


# Jobs that ended without results; under a rule with failure notices their destinations get
# a notice (kinds below) instead: "PulmoGate: analysis not performed" (router.notices).
NO_RESULT_STATUSES = frozenset(
    {JobStatus.REJECTED, JobStatus.FAILED, JobStatus.NO_LICENSE, JobStatus.LICENSE_EXPIRED}
)
FAILURE_NOTICE_KINDS = ("notice", "noticesr")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"


class Series(Base):
    """A series held by the receiver."""

    __tablename__ = "series"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    patient_name: Mapped[str] = mapped_column(String(200), default="")
    # PatientName folded (case and accents) for C-FIND and the API search; set on write.
    patient_name_search: Mapped[str] = mapped_column(String(200), default="")
    patient_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    study_date: Mapped[str] = mapped_column(String(8), default="", index=True)
    accession_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    study_description: Mapped[str] = mapped_column(String(200), default="")
    series_description: Mapped[str] = mapped_column(String(200), default="")
    modality: Mapped[str] = mapped_column(String(16), default="")
    series_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    study_time: Mapped[str] = mapped_column(String(16), default="")
    study_id: Mapped[str] = mapped_column(String(16), default="")
    patient_birth_date: Mapped[str] = mapped_column(String(8), default="")
    patient_sex: Mapped[str] = mapped_column(String(16), default="")
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    called_ae: Mapped[str] = mapped_column(String(16), default="")
    peer_ip: Mapped[str] = mapped_column(String(45), default="")
    status: Mapped[SeriesStatus] = mapped_column(
        StatusColumn(SeriesStatus, 16), default=SeriesStatus.RECEIVING, index=True
    )
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    open_associations: Mapped[int] = mapped_column(Integer, default=0)
    first_received_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    last_released_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    # Instances received again (already stored) since the series was last announced.
    resent_instances: Mapped[int] = mapped_column(Integer, default=0)
    # When a restart found an association of the series open (the series may be partial).
    interrupted_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    instances: Mapped[list["Instance"]] = relationship(back_populates="series")


@event.listens_for(Series, "before_insert")
@event.listens_for(Series, "before_update")
def _fold_patient_name(_mapper: object, _connection: object, series: Series) -> None:
    """Keep ``patient_name_search`` the folded ``patient_name`` whoever writes the row."""
    series.patient_name_search = fold(series.patient_name or "")[:200]


class Instance(Base):
    """One stored SOP instance (the file is durable before the row commits)."""

    __tablename__ = "instances"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    instance_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    columns: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pixel_spacing: Mapped[str] = mapped_column(String(64), default="")
    slice_thickness: Mapped[float | None] = mapped_column(Float, nullable=True)
    modality: Mapped[str] = mapped_column(String(16), default="")
    received_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    series: Mapped[Series] = relationship(back_populates="instances")


class Destination(Base):
    """A DICOM peer that receives results."""

    __tablename__ = "destinations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    ae_title: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # How the result pictures (overlay, summary) are sent: jpeg, jpeg-ls, rle, uncompressed
    # (pulmogate.common.dicom.encoding.ImageEncoding).
    image_encoding: Mapped[str] = mapped_column(String(16), default="jpeg", server_default="jpeg")


class RuleDestination(Base):
    """Which destinations a rule sends to."""

    __tablename__ = "rule_destinations"
    rule_id: Mapped[int] = mapped_column(
        ForeignKey("routing_rules.id", ondelete="CASCADE"), primary_key=True
    )
    destination_id: Mapped[int] = mapped_column(
        ForeignKey("destinations.id", ondelete="CASCADE"), primary_key=True
    )


class RoutingRule(Base):
    """Which series are analysed and where the results go (fields of the original product)."""

    __tablename__ = "routing_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_ae_title: Mapped[str | None] = mapped_column(String(16), nullable=True)
    study_description_filter: Mapped[str] = mapped_column(String(500), default=".*")
    series_description_filter: Mapped[str] = mapped_column(String(500), default=".*")
    ttl_days: Mapped[int] = mapped_column(Integer, default=30)
    # Send a clearly labelled "analysis not performed" result when a job of this rule fails.
    failure_notices: Mapped[bool] = mapped_column(Boolean, default=True)
    destinations: Mapped[list[Destination]] = relationship(
        secondary="rule_destinations", lazy="selectin"
    )


class Job(Base):
    """One analysis of one series, from routing to delivery."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(
        ForeignKey("series.id", ondelete="CASCADE"), unique=True, index=True
    )
    rule_id: Mapped[int | None] = mapped_column(
        ForeignKey("routing_rules.id", ondelete="SET NULL"), nullable=True
    )
    status: Mapped[JobStatus] = mapped_column(
        StatusColumn(JobStatus, 20), default=JobStatus.QUEUED, index=True
    )
    reason_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    prediction: Mapped[str | None] = mapped_column(Text, nullable=True)
    grade: Mapped[int | None] = mapped_column(Integer, nullable=True)
    percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    figures: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    model_name: Mapped[str | None] = mapped_column(String(50), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(50), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Instances the job's outcome was decided on (input checks, then the analysis).
    analysed_instance_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The process analysing the job (``pulmogate.common.workers``) and its last sign of life.
    worker: Mapped[str | None] = mapped_column(String(160), nullable=True)
    worker_seen_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    resend_count: Mapped[int] = mapped_column(Integer, default=0)
    resent_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow, onupdate=utcnow)
    analysis_started_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    analysis_finished_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    # When the job last became final; a resend keeps it, a re-analysis clears it.
    finished_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    purged_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    series: Mapped[Series] = relationship(lazy="joined")
    logs: Mapped[list["JobLog"]] = relationship(order_by="JobLog.id", cascade="all, delete")
    outputs: Mapped[list["OutputObject"]] = relationship(cascade="all, delete")
    deliveries: Mapped[list["Delivery"]] = relationship(cascade="all, delete")


class JobLog(Base):
    """A line of a job's log, shown to operators (never patient data)."""

    __tablename__ = "job_logs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    level: Mapped[str] = mapped_column(String(10), default="info")
    service: Mapped[str] = mapped_column(String(20), default="")
    message: Mapped[str] = mapped_column(Text)


class OutputObject(Base):
    """A result object written by inference (UID deterministic per input series and model)."""

    __tablename__ = "output_objects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(Text)
    # Recorded by inference as it writes the file (pulmogate.common.dicom.output_attributes);
    # NULL on rows of older versions: the receiver reads those files' headers once.
    modality: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    series_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    series_description: Mapped[str | None] = mapped_column(String(64), nullable=True)
    instance_number: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Delivery(Base):
    """The state of sending one job's outputs to one destination."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("job_id", "destination_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("destinations.id", ondelete="CASCADE"))
    status: Mapped[DeliveryStatus] = mapped_column(
        StatusColumn(DeliveryStatus, 16), default=DeliveryStatus.PENDING, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow, onupdate=utcnow)
    destination: Mapped[Destination] = relationship(lazy="joined")


class OutboxMessage(Base):
    """An event committed with the state change that caused it; the relay publishes it."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    routing_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    delay_s: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True, index=True)


from pulmogate.common.db import accounts as _accounts  # noqa: E402, F401  (tables)
from pulmogate.common.db import operations as _operations  # noqa: E402, F401  (tables)
