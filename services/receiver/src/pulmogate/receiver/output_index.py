"""The series attributes of result objects, read once from their headers into the DB.

Inference records a result's kind, UIDs and path; a query also needs its Modality,
SeriesNumber, SeriesDescription and InstanceNumber. The receiver reads them from each new
file's header once (``modality`` NULL: not read yet; empty: file unreadable, not offered).
"""

import asyncio
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydicom import dcmread
from sqlalchemy import select, update

from pulmogate.common.db.models import Job, OutputObject
from pulmogate.common.db.session import Database

log = structlog.get_logger("pulmogate.receiver")

BATCH = 500


@dataclass(frozen=True)
class OutputHeader:
    """What a query returns of a result object."""

    modality: str
    series_number: int | None
    series_description: str
    instance_number: int | None


def _int(value: object) -> int | None:
    try:
        return None if value in (None, "") else int(str(value))
    except ValueError:
        return None


def read_output_header(path: str) -> OutputHeader | None:
    """The query attributes of one result file; None when it cannot be read."""
    try:
        ds = dcmread(
            Path(path),
            stop_before_pixels=True,
            specific_tags=["Modality", "SeriesNumber", "SeriesDescription", "InstanceNumber"],
        )
    except Exception:
        return None
    return OutputHeader(
        modality=str(ds.get("Modality", "") or "")[:16] or "OT",
        series_number=_int(ds.get("SeriesNumber")),
        series_description=str(ds.get("SeriesDescription", "") or "")[:64],
        instance_number=_int(ds.get("InstanceNumber")),
    )


def read_output_headers(paths: list[str]) -> list[OutputHeader | None]:
    """``read_output_header`` of each path (in a worker thread)."""
    return [read_output_header(path) for path in paths]


async def index_outputs(db: Database) -> int:
    """Read the headers of result objects not indexed yet; returns how many were read."""
    done = 0
    while True:
        async with db.session() as session:
            pending = (
                await session.execute(
                    select(OutputObject.id, OutputObject.path)
                    .join(Job, OutputObject.job_id == Job.id)
                    .where(OutputObject.modality.is_(None), Job.purged_at.is_(None))
                    .limit(BATCH)
                )
            ).all()
        if not pending:
            return done
        headers = await asyncio.to_thread(read_output_headers, [path for _, path in pending])
        async with db.session() as session:
            for (output_id, _), header in zip(pending, headers, strict=True):
                if header is None:
                    log.warning("result object unreadable, not offered to queries", id=output_id)
                values = (
                    {"modality": ""}
                    if header is None
                    else {
                        "modality": header.modality,
                        "series_number": header.series_number,
                        "series_description": header.series_description,
                        "instance_number": header.instance_number,
                    }
                )
                await session.execute(
                    update(OutputObject).where(OutputObject.id == output_id).values(**values)
                )
        done += len(pending)
