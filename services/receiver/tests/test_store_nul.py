"""An embedded NUL in a recorded text attribute is stored without it, never retried forever."""

import asyncio
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from pulmogate.common.dicom.statuses import STATUS_SUCCESS
from services.receiver.tests.helpers import AE_TITLE, ReceiverFactory, ct_slice


def store(port: int, *datasets: Dataset) -> list[int]:
    """Each dataset over one association: the statuses."""
    ae = AE(ae_title="NULSCU")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
async def test_a_nul_in_a_text_attribute_is_stored_without_it_and_keeps_its_row(
    receiver_on: ReceiverFactory, backend: str
) -> None:
    study, series_uid = generate_uid(), generate_uid()
    inner = ct_slice(study, series_uid, 0)
    inner.StudyDescription = "CHEST\x00CT"
    padded = ct_slice(study, series_uid, 1)
    padded.StudyDescription = "CHEST\x00CT"
    padded.SeriesDescription = "AXIAL\x00"  # trailing NUL padding: pydicom drops it on reading

    async with receiver_on(sqlite=backend == "sqlite") as rx:
        statuses = await asyncio.to_thread(store, rx.port, inner, padded)
        instances = await rx.instances(series_uid)
        series = await rx.series(series_uid)
        files = sorted(p.name for p in rx.ctx.storage.root.rglob("*.dcm"))

    assert statuses == [STATUS_SUCCESS, STATUS_SUCCESS]
    assert {i.sop_instance_uid for i in instances} == {
        str(inner.SOPInstanceUID),
        str(padded.SOPInstanceUID),
    }
    assert files == sorted(f"{uid}.dcm" for uid in (inner.SOPInstanceUID, padded.SOPInstanceUID))
    assert all(Path(i.path).is_file() for i in instances)
    assert series is not None
    assert series.study_description == "CHESTCT"
    assert series.series_description == "AXIAL"
