"""The query attributes of result objects written before inference recorded them.

Inference records a result's Modality, SeriesNumber, SeriesDescription and InstanceNumber
in its row when it writes the file (``pulmogate.common.dicom.output_attributes``), and
queries answer from the rows. A row from an older version has ``modality`` NULL: the
receiver reads that file's header once (empty ``modality``: unreadable, not offered).
"""

import asyncio
from pathlib import Path

import structlog
from pydicom import dcmread
from sqlalchemy import select, update

from pulmogate.common.db.models import Job, OutputObject
from pulmogate.common.db.session import Database
from pulmogate.common.dicom.output_attributes import TAGS, OutputAttributes, output_attributes

log = structlog.get_logger("pulmogate.receiver")

BATCH = 500


def read_output_header(path: str) -> OutputAttributes | None:
    """The query attributes of one result file; None when it cannot be read."""
    try:
        ds = dcmread(Path(path), stop_before_pixels=True, specific_tags=list(TAGS))
    except Exception:
        return None
    return output_attributes(ds)


def read_output_headers(paths: list[str]) -> list[OutputAttributes | None]:
    """``read_output_header`` of each path (in a worker thread)."""
    return [read_output_header(path) for path in paths]


async def index_outputs(db: Database) -> int:
    """Read the headers of result objects whose rows lack them; returns how many were read
    (none once every row was written by a version that records them)."""
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
                values = {"modality": ""} if header is None else header.columns()
                await session.execute(
                    update(OutputObject).where(OutputObject.id == output_id).values(**values)
                )
        done += len(pending)
