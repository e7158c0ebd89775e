"""Series completion edge cases at the receiver, on Postgres (the policy is in
services/receiver/src/pulmogate/receiver/completion.py and docs/reliability.md):

* a series sent over two associations is announced once, when both have ended and the
  series was quiet for ``series_quiet_seconds`` (0.5 s here); an association holds a
  series from its first instance of it on (an open association that has sent nothing of
  the series yet does not: the gap must stay under the quiet period);
* two series of one study interleaved on one association are two announcements with
  their own instances;
* an aborted association releases its series: what was acknowledged is announced after
  the quiet period; the rest, resent, reopens the series and announces it again;
* a late instance reopens an announced series (see also the receiver's own
  test_late_instance_reopens_the_series_and_announces_it_again, and the e2e test in
  test_crash_recovery.py for what the router then does).
"""

import asyncio
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from pulmogate.common.db.models import SeriesStatus
from services.receiver.tests.helpers import ReceiverFactory, ct_slice, receiver_on

__all__ = ["receiver_on"]

SUCCESS = 0x0000


def associate(port: int) -> Association:
    ae = AE(ae_title="CT_SCANNER")
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="PULMOGATE")
    assert assoc.is_established
    return assoc


def store(assoc: Association, items: list[Dataset]) -> list[int]:
    return [int(assoc.send_c_store(ds).Status) for ds in items]


async def in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def test_series_over_two_overlapping_associations_is_announced_once_with_all(
    receiver_on: ReceiverFactory,
) -> None:
    study, series = generate_uid(), generate_uid()
    slices = [ct_slice(study, series, k) for k in range(8)]
    async with receiver_on() as rx:
        first = await in_thread(associate, rx.port)
        assert await in_thread(store, first, slices[:4]) == [SUCCESS] * 4
        second = await in_thread(associate, rx.port)
        assert await in_thread(store, second, slices[4:5]) == [SUCCESS]
        await in_thread(first.release)
        await asyncio.sleep(1.0)  # twice the quiet period: the second one holds the series
        assert rx.arrivals(series) == []
        assert await in_thread(store, second, slices[5:]) == [SUCCESS] * 3
        await in_thread(second.release)
        await rx.wait_arrivals(series)
        await asyncio.sleep(1.0)
    assert [e.instance_count for e in rx.arrivals(series)] == [8]


async def test_two_series_of_one_study_interleaved_are_announced_separately(
    receiver_on: ReceiverFactory,
) -> None:
    study, lung, mediastinum = generate_uid(), generate_uid(), generate_uid()
    interleaved = [ct_slice(study, uid, k) for k in range(5) for uid in (lung, mediastinum)] + [
        ct_slice(study, lung, 5)
    ]
    async with receiver_on() as rx:
        assoc = await in_thread(associate, rx.port)
        assert await in_thread(store, assoc, interleaved) == [SUCCESS] * 11
        await in_thread(assoc.release)
        await rx.wait_arrivals(lung)
        await rx.wait_arrivals(mediastinum)
        lung_rows = {i.sop_instance_uid for i in await rx.instances(lung)}
        mediastinum_rows = {i.sop_instance_uid for i in await rx.instances(mediastinum)}
    assert [e.instance_count for e in rx.arrivals(lung)] == [6]
    assert [e.instance_count for e in rx.arrivals(mediastinum)] == [5]
    assert lung_rows == {
        str(ds.SOPInstanceUID) for ds in interleaved if ds.SeriesInstanceUID == lung
    }
    assert {e.study_uid for e in rx.arrived} == {study}
    assert not lung_rows & mediastinum_rows


async def test_aborted_association_announces_what_was_acknowledged_and_a_resend_completes_it(
    receiver_on: ReceiverFactory,
) -> None:
    study, series = generate_uid(), generate_uid()
    slices = [ct_slice(study, series, k) for k in range(10)]
    async with receiver_on(series_idle_seconds=60) as rx:
        assoc = await in_thread(associate, rx.port)
        assert await in_thread(store, assoc, slices[:4]) == [SUCCESS] * 4
        await in_thread(assoc.abort)
        # The abort released the series: no waiting for the 60 s idle timeout.
        done = await rx.wait_status(series, SeriesStatus.COMPLETE, timeout=5)
        assert done.open_associations == 0 and done.instance_count == 4
        await rx.wait_arrivals(series)
        # The modality resends the whole series; the four stored ones are not counted twice.
        again = await in_thread(associate, rx.port)
        assert await in_thread(store, again, slices) == [SUCCESS] * 10
        await in_thread(again.release)
        await rx.wait_arrivals(series, count=2)
        assert len(await rx.instances(series)) == 10
    assert [e.instance_count for e in rx.arrivals(series)] == [4, 10]


async def test_a_resent_announced_series_is_not_announced_again(
    receiver_on: ReceiverFactory,
) -> None:
    study, series = generate_uid(), generate_uid()
    slices = [ct_slice(study, series, k) for k in range(4)]
    async with receiver_on() as rx:
        for _ in range(2):
            assoc = await in_thread(associate, rx.port)
            assert await in_thread(store, assoc, slices) == [SUCCESS] * 4
            await in_thread(assoc.release)
            await rx.wait_arrivals(series)
        await asyncio.sleep(1.5)
        assert len(await rx.instances(series)) == 4
    assert [e.instance_count for e in rx.arrivals(series)] == [4]


async def test_a_sop_instance_uid_reused_in_another_series_is_refused_and_leaves_nothing(
    receiver_on: ReceiverFactory,
) -> None:
    """Found by the receiver fuzz test: the reused UID used to be acknowledged as a
    duplicate while its file was written into a new, empty series (announced with 0)."""
    study, first, second = generate_uid(), generate_uid(), generate_uid()
    original = ct_slice(study, first, 0)
    reused = ct_slice(study, second, 0, sop_uid=str(original.SOPInstanceUID))
    async with receiver_on() as rx:
        assoc = await in_thread(associate, rx.port)
        try:
            assert await in_thread(store, assoc, [original]) == [SUCCESS]
            answer = await in_thread(assoc.send_c_store, reused)
        finally:
            await in_thread(assoc.release)
        await rx.wait_arrivals(first)
        assert int(answer.Status) == 0xC210
        assert "already stored in another series" in str(answer.ErrorComment)
        assert await rx.series(second) is None
        stored = [p for p in rx.incoming.rglob("*.dcm")]
        assert [p.parent.name for p in stored] == [first]
        assert [i.sop_instance_uid for i in await rx.instances(first)] == [
            str(original.SOPInstanceUID)
        ]


@pytest.mark.parametrize("sqlite", [False, True], ids=["postgres", "sqlite"])
async def test_a_sop_instance_uid_recorded_earlier_in_another_series_is_refused(
    receiver_on: ReceiverFactory, sqlite: bool
) -> None:
    """As above with the first row committed before the reuse (the answer then comes from the
    database, not from the instances still pending), on both databases."""
    study, first, second = generate_uid(), generate_uid(), generate_uid()
    original = ct_slice(study, first, 0)
    reused = ct_slice(study, second, 0, sop_uid=str(original.SOPInstanceUID))
    async with receiver_on(sqlite=sqlite) as rx:
        assoc = await in_thread(associate, rx.port)
        try:
            assert await in_thread(store, assoc, [original]) == [SUCCESS]
            await rx.recorded()
            assert rx.service.scp is not None and not rx.service.scp.pending.holds(first)
            answer = await in_thread(assoc.send_c_store, reused)
        finally:
            await in_thread(assoc.release)
        await rx.wait_arrivals(first)
        assert int(answer.Status) == 0xC210
        assert "already stored in another series" in str(answer.ErrorComment)
        assert await rx.series(second) is None
        assert [p.parent.name for p in rx.incoming.rglob("*.dcm")] == [first]
