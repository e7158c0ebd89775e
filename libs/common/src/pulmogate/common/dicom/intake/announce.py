"""The announcement of a complete series, from its row, whoever completed it."""

from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common.db.models import Series
from pulmogate.common.events import SeriesArrived
from pulmogate.common.outbox import enqueue


def arrival_of(series: Series, *, received_again: int = 0) -> SeriesArrived:
    """The ``series.arrived`` event of a complete series row."""
    return SeriesArrived(
        series_id=series.id,
        study_uid=series.study_uid,
        series_uid=series.series_uid,
        calling_ae=series.calling_ae,
        called_ae=series.called_ae,
        peer_ip=series.peer_ip,
        study_description=series.study_description,
        series_description=series.series_description,
        modality=series.modality,
        instance_count=series.instance_count,
        instances_received_again=received_again,
    )


def announce_arrival(session: AsyncSession, series: Series, *, received_again: int = 0) -> None:
    """Stage ``series.arrived`` for a complete series in the session's transaction."""
    enqueue(session, arrival_of(series, received_again=received_again))
