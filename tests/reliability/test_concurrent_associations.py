"""Twenty modalities at once: every association is accepted (pynetdicom's default limit of
ten would reject half of them), every instance is stored once, every series announced
once. The full-size version (20 x 300 slices) is bench/load.py."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from pydicom import Dataset
from pydicom.uid import generate_uid

from services.receiver.tests.helpers import ReceiverFactory, ct_slice, receiver_on
from tests.reliability.test_completion_edges import SUCCESS, associate, store

__all__ = ["receiver_on"]

ASSOCIATIONS = 20
SLICES = 5


async def test_twenty_concurrent_associations_are_all_accepted_and_stored_once(
    receiver_on: ReceiverFactory,
) -> None:
    series = [(generate_uid(), generate_uid()) for _ in range(ASSOCIATIONS)]
    batches = [[ct_slice(st, se, k) for k in range(SLICES)] for st, se in series]

    def modality(items: list[Dataset]) -> list[int]:
        assoc = associate(port)
        try:
            return store(assoc, items)
        finally:
            assoc.release()

    async with receiver_on() as rx:
        port = rx.port
        with ThreadPoolExecutor(ASSOCIATIONS) as pool:
            results = await asyncio.gather(
                *(asyncio.wrap_future(pool.submit(modality, b)) for b in batches)
            )
        assert results == [[SUCCESS] * SLICES] * ASSOCIATIONS
        for _, series_uid in series:
            await rx.wait_arrivals(series_uid, timeout=20)
            assert len(await rx.instances(series_uid)) == SLICES
    assert sorted(e.instance_count for e in rx.arrived) == [SLICES] * ASSOCIATIONS
