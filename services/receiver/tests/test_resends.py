"""A series sent again: nothing new is announced once as ``series.resent`` with its count;
new instances among resent ones reopen the series and the announcement says how many of
the instances that came were already stored (real Postgres, pynetdicom peers)."""

import asyncio

from pydicom.uid import generate_uid

from pulmogate.common.db.models import SeriesStatus
from services.receiver.tests.helpers import ReceiverFactory, ct_slice, receiver_on
from services.receiver.tests.test_receiver import send

__all__ = ["receiver_on"]

SUCCESS = 0x0000


async def test_an_identical_resend_is_announced_once_as_resent_and_not_as_arrived(
    receiver_on: ReceiverFactory,
) -> None:
    study, series_uid = generate_uid(), generate_uid()
    slices = [ct_slice(study, series_uid, k) for k in range(4)]
    async with receiver_on() as rx:
        assert await asyncio.to_thread(send, rx.port, *slices) == [SUCCESS] * 4
        await rx.wait_arrivals(series_uid)
        assert await asyncio.to_thread(send, rx.port, *slices) == [SUCCESS] * 4
        assert await asyncio.to_thread(send, rx.port, *slices[:2]) == [SUCCESS] * 2
        for _ in range(100):
            if rx.resent:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # three quiet periods: nothing more is announced
        series = await rx.series(series_uid)
    assert [e.instance_count for e in rx.arrivals(series_uid)] == [4]
    # Two associations within the quiet period are one resend (6 instances again), or two.
    assert sum(e.instances for e in rx.resent) == 6
    assert {e.series_uid for e in rx.resent} == {series_uid}
    assert series is not None and series.status == SeriesStatus.COMPLETE
    assert series.resent_instances == 0 and series.instance_count == 4


async def test_a_resend_with_new_instances_reopens_and_says_how_many_were_stored(
    receiver_on: ReceiverFactory,
) -> None:
    study, series_uid = generate_uid(), generate_uid()
    slices = [ct_slice(study, series_uid, k) for k in range(6)]
    async with receiver_on() as rx:
        assert await asyncio.to_thread(send, rx.port, *slices[:3]) == [SUCCESS] * 3
        await rx.wait_arrivals(series_uid)
        assert await asyncio.to_thread(send, rx.port, *slices) == [SUCCESS] * 6
        await rx.wait_arrivals(series_uid, count=2)
        await asyncio.sleep(1.0)
    announced = [(e.instance_count, e.instances_received_again) for e in rx.arrivals(series_uid)]
    assert announced == [(3, 0), (6, 3)]
    assert rx.resent == []
