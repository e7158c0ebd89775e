"""Typed, versioned events: the only door between services. One routing key each."""

import uuid
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, Field


class Event(BaseModel):
    """Base of every bus message."""

    routing_key: ClassVar[str]
    schema_version: int = 1
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class SeriesArrived(Event):
    """The receiver holds a complete series."""

    routing_key: ClassVar[str] = "series.arrived"
    series_id: int
    study_uid: str
    series_uid: str
    calling_ae: str
    called_ae: str
    peer_ip: str
    study_description: str = ""
    series_description: str = ""
    modality: str = ""
    instance_count: int
    # Of the instances that arrived since the last announcement, how many were already stored.
    instances_received_again: int = 0


class SeriesResent(Event):
    """Instances of an announced series arrived again, all of them already stored."""

    routing_key: ClassVar[str] = "series.resent"
    series_id: int
    series_uid: str
    calling_ae: str
    peer_ip: str
    instances: int


class ReanalysisRequested(Event):
    """An operator asked for a job to be checked and analysed again."""

    routing_key: ClassVar[str] = "job.reanalysis_requested"
    job_id: int
    requested_by: str


class AnalysisRequested(Event):
    """A job is ready for analysis."""

    routing_key: ClassVar[str] = "analysis.requested"
    job_id: int


class AnalysisFinished(Event):
    """The inference service finished (or refused) a job."""

    routing_key: ClassVar[str] = "analysis.finished"
    job_id: int
    status: str


class NoticeRequested(Event):
    """A job ended without results under a rule with destinations: build its failure notice
    (inference answers with ``analysis.finished`` once the notice objects are stored)."""

    routing_key: ClassVar[str] = "notice.requested"
    job_id: int


class DeliveryRequested(Event):
    """Send a job's outputs to one destination."""

    routing_key: ClassVar[str] = "delivery.requested"
    delivery_id: int


EVENT_TYPES: dict[str, type[Event]] = {
    cls.routing_key: cls
    for cls in (
        SeriesArrived,
        SeriesResent,
        ReanalysisRequested,
        AnalysisRequested,
        AnalysisFinished,
        NoticeRequested,
        DeliveryRequested,
    )
}


def decode_event(routing_key: str, body: bytes) -> Event:
    """Parse a message body into its event model."""
    return EVENT_TYPES[routing_key].model_validate_json(body)
