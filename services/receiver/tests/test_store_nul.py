"""An embedded NUL in a recorded text attribute is refused with a reason, never retried forever."""

import asyncio
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from pulmogate.receiver.scp import STATUS_CANNOT_UNDERSTAND, STATUS_SUCCESS
from services.receiver.tests.helpers import AE_TITLE, ReceiverFactory, ct_slice


def store(port: int, *datasets: object) -> list[tuple[int, str]]:
    """Each dataset over one association: (status, error comment)."""
    ae = AE(ae_title="NULSCU")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
    assert assoc.is_established
    try:
        answers = [assoc.send_c_store(ds) for ds in datasets]
        return [(int(a.Status), str(a.get("ErrorComment", ""))) for a in answers]
    finally:
        assoc.release()


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
async def test_a_nul_in_a_text_attribute_is_refused_and_leaves_no_file(
    receiver_on: ReceiverFactory, backend: str
) -> None:
    study, series_uid = generate_uid(), generate_uid()
    bad = ct_slice(study, series_uid, 0)
    bad.StudyDescription = "CHEST\x00CT"
    padded = ct_slice(study, series_uid, 1)
    padded.SeriesDescription = "AXIAL\x00"  # trailing NUL padding: pydicom drops it on reading
    fixed = ct_slice(study, series_uid, 0, sop_uid=str(bad.SOPInstanceUID))
    fixed.StudyDescription = "CHEST CT"

    async with receiver_on(sqlite=backend == "sqlite") as rx:
        first, second = await asyncio.to_thread(store, rx.port, bad, padded)
        stored_after_refusal = sorted(p.name for p in rx.ctx.storage.root.rglob("*.dcm"))
        before_resend = await rx.series(series_uid)
        [resent] = await asyncio.to_thread(store, rx.port, fixed)
        instances = await rx.instances(series_uid)
        after_resend = await rx.series(series_uid)

    assert first == (STATUS_CANNOT_UNDERSTAND, "NUL character in study_description")
    assert second[0] == STATUS_SUCCESS
    assert stored_after_refusal == [f"{padded.SOPInstanceUID}.dcm"]
    assert resent[0] == STATUS_SUCCESS
    assert {i.sop_instance_uid for i in instances} == {
        str(bad.SOPInstanceUID),
        str(padded.SOPInstanceUID),
    }
    assert all(Path(i.path).is_file() for i in instances)
    assert before_resend is not None and before_resend.series_description == "AXIAL"
    assert after_resend is not None and after_resend.study_description == "CHEST CT"
