"""One intake: a series uploaded through the API and the same series C-STOREd by a DICOM peer
to the receiver give the same series and instance rows, and C-FIND finds an uploaded study
with every key the receiver indexes (real Postgres, the real app, a real pynetdicom peer)."""

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
)
from sqlalchemy import delete, inspect, select

from pulmogate.common.db.models import Instance, OutboxMessage, Series
from pulmogate.common.db.operations import Upload
from pulmogate.common.runtime import Context
from pulmogate.tools.phantom import make_phantom, write_series
from services.receiver.tests.helpers import AE_TITLE, start_receiver

SCU_AE = "INTAKESCU"
# Values the phantom leaves empty or at a default, set so that a row that drops one fails.
STUDY_KEYS = {
    "StudyTime": "093015",
    "StudyID": "S4711",
    "PatientBirthDate": "19610203",
    "PatientSex": "F",
}
SERIES_NUMBER = 7

# Columns that legitimately differ between the two ways in, each with its reason; every
# other column of the series and instance rows must be equal.
SERIES_EXCEPTIONS = {
    "id": "a new row each time",
    "first_received_at": "when it arrived",
    "last_received_at": "when it arrived",
    "completed_at": "when it was announced (an upload at once, C-STORE after the quiet time)",
    "last_released_at": "when the association ended: an upload has no association",
    "calling_ae": "the sender: the peer's AE title for C-STORE, UPLOAD for the API",
    "peer_ip": "the sender's address: the DICOM peer's for C-STORE, the HTTP client's for the API",
}
INSTANCE_EXCEPTIONS = {
    "id": "a new row each time",
    "series_id": "the id of the new series row",
    "received_at": "when it arrived",
    "size_bytes": "the receiver writes its own file meta (with the peer in it) before the "
    "dataset as received; an upload keeps the file as it was sent",
}


@pytest.fixture
def sent_files(tmp_path: Path) -> list[Path]:
    """A four-slice phantom series with every study key the receiver indexes filled in."""
    paths = write_series(make_phantom(slices=4, size=64), tmp_path / "sent", seed=17)
    for path in paths:
        ds = dcmread(path)
        for keyword, value in STUDY_KEYS.items():
            setattr(ds, keyword, value)
        ds.SeriesNumber = SERIES_NUMBER
        ds.save_as(path)
    return paths


def c_store(port: int, paths: list[Path]) -> list[int]:
    """Send the files over one association (from a thread: the receiver needs the loop),
    in the syntax they were written in (no conversion by the peer)."""
    ae = AE(ae_title=SCU_AE)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(str(path)).Status) for path in paths]
    finally:
        assoc.release()


def c_find(port: int, query: Dataset) -> list[Dataset]:
    """The identifiers of a Study Root C-FIND's pending responses."""
    ae = AE(ae_title=SCU_AE)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
    assert assoc.is_established
    try:
        found: list[Dataset] = []
        for status, identifier in assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind
        ):
            if status and status.Status in (0xFF00, 0xFF01):
                assert identifier is not None
                found.append(identifier)
        return found
    finally:
        assoc.release()


def _columns(row: object, exceptions: dict[str, str]) -> dict[str, Any]:
    return {
        attr.key: getattr(row, attr.key)
        for attr in inspect(row).mapper.column_attrs
        if attr.key not in exceptions
    }


async def _rows(ctx: Context, series_uid: str) -> tuple[Series, dict[str, Any], list[Any]]:
    async with ctx.db.session() as session:
        series = await session.scalar(select(Series).where(Series.series_uid == series_uid))
        assert series is not None
        instances = (
            await session.scalars(
                select(Instance)
                .where(Instance.series_id == series.id)
                .order_by(Instance.sop_instance_uid)
            )
        ).all()
    return (
        series,
        _columns(series, SERIES_EXCEPTIONS),
        [_columns(i, INSTANCE_EXCEPTIONS) for i in instances],
    )


async def _forget(ctx: Context) -> None:
    """Remove the series, its rows and its files, as if PulmoGate had never held it."""
    async with ctx.db.session() as session:
        for model in (Upload, Instance, OutboxMessage, Series):
            await session.execute(delete(model))
    for path in ctx.storage.incoming_folder().rglob("*.dcm"):
        path.unlink()


async def test_a_series_uploaded_and_the_same_series_c_stored_give_the_same_rows(
    client: httpx.AsyncClient, ctx: Context, database_url: str, sent_files: list[Path]
) -> None:
    series_uid = str(dcmread(sent_files[0]).SeriesInstanceUID)
    async with start_receiver(ctx.settings.data_dir, database_url) as rx:
        statuses = await asyncio.to_thread(c_store, rx.port, sent_files)
        await rx.wait_arrivals(series_uid)
    received, received_series, received_instances = await _rows(ctx, series_uid)
    await _forget(ctx)

    response = await client.post(
        "/api/v1/uploads",
        files=[("files", (p.name, p.read_bytes(), "application/dicom")) for p in sent_files],
    )
    uploaded, uploaded_series, uploaded_instances = await _rows(ctx, series_uid)

    assert statuses == [0x0000] * 4
    assert response.status_code == 201, response.text
    assert (received.calling_ae, uploaded.calling_ae) == (SCU_AE, "UPLOAD")
    assert received_series["study_time"] == STUDY_KEYS["StudyTime"]
    assert received_series["series_number"] == SERIES_NUMBER
    assert uploaded_series == received_series
    assert len(uploaded_instances) == len(received_instances) == 4
    assert uploaded_instances == received_instances


async def test_c_find_on_an_uploaded_study_returns_the_keys_the_receiver_indexes(
    client: httpx.AsyncClient, ctx: Context, database_url: str, sent_files: list[Path]
) -> None:
    first = dcmread(sent_files[0])
    response = await client.post(
        "/api/v1/uploads",
        files=[("files", (p.name, p.read_bytes(), "application/dicom")) for p in sent_files],
    )
    study_query = Dataset()
    study_query.QueryRetrieveLevel = "STUDY"
    study_query.StudyInstanceUID = first.StudyInstanceUID
    for keyword in STUDY_KEYS:
        setattr(study_query, keyword, "")
    series_query = Dataset()
    series_query.QueryRetrieveLevel = "SERIES"
    series_query.StudyInstanceUID = first.StudyInstanceUID
    series_query.SeriesInstanceUID = ""
    series_query.SeriesNumber = None

    async with start_receiver(ctx.settings.data_dir, database_url) as rx:
        studies = await asyncio.to_thread(c_find, rx.port, study_query)
        series = await asyncio.to_thread(c_find, rx.port, series_query)

    assert response.status_code == 201, response.text
    assert len(studies) == 1
    assert {keyword: str(studies[0].get(keyword, "")) for keyword in STUDY_KEYS} == STUDY_KEYS
    assert [(s.SeriesInstanceUID, s.SeriesNumber) for s in series] == [
        (first.SeriesInstanceUID, SERIES_NUMBER)
    ]
