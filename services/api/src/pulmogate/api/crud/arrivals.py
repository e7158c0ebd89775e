"""Series still arriving (or complete and not yet routed): what the receiver holds so far."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.api.schemas import ArrivalOut
from pulmogate.common.db.models import Series, SeriesStatus

ARRIVING = (SeriesStatus.RECEIVING, SeriesStatus.COMPLETE)


def arrival(series: Series) -> ArrivalOut:
    """One arriving series as the API shows it."""
    return ArrivalOut(
        series_id=series.id,
        status=series.status,
        instance_count=series.instance_count,
        received_at=series.first_received_at,
        last_received_at=series.last_received_at,
        calling_ae=series.calling_ae,
        peer_ip=series.peer_ip,
        study_uid=series.study_uid,
        series_uid=series.series_uid,
        study_description=series.study_description,
        series_description=series.series_description,
        modality=series.modality,
        patient_name=series.patient_name,
        patient_id=series.patient_id,
        accession_number=series.accession_number,
        study_date=series.study_date,
    )


async def list_arrivals(session: AsyncSession, *, limit: int) -> list[ArrivalOut]:
    """Series being received, or received and waiting for the router; newest first."""
    rows = await session.scalars(
        select(Series)
        .where(Series.status.in_(list(ARRIVING)))
        .order_by(Series.first_received_at.desc(), Series.id.desc())
        .limit(limit)
    )
    return [arrival(series) for series in rows]
