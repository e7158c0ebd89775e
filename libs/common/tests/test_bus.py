"""Both bus implementations deliver, retry, dead-letter and delay the same way."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from pulmogate.common.bus import Bus, make_bus
from pulmogate.common.events import AnalysisRequested, Event


@pytest.fixture(params=["memory", "rabbitmq"])
async def bus(request: pytest.FixtureRequest, amqp_url: str) -> AsyncIterator[Bus]:
    instance = make_bus("memory://" if request.param == "memory" else amqp_url)
    await instance.connect()
    yield instance
    await instance.close()


async def _collect(bus: Bus, queue: str, fail_times: int = 0) -> list[Event]:
    seen: list[Event] = []
    failures = {"left": fail_times}

    async def handler(event: Event) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("transient failure")
        seen.append(event)

    await bus.subscribe(queue, [AnalysisRequested.routing_key], handler)
    return seen


async def _wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_published_events_reach_the_bound_queue(bus: Bus) -> None:
    seen = await _collect(bus, "test.deliver")
    await bus.publish(AnalysisRequested(job_id=7))
    await _wait_for(lambda: len(seen) == 1)
    assert isinstance(seen[0], AnalysisRequested) and seen[0].job_id == 7


async def test_a_failing_handler_is_retried_then_succeeds(bus: Bus) -> None:
    seen = await _collect(bus, "test.retry", fail_times=1)
    await bus.publish(AnalysisRequested(job_id=8))
    await _wait_for(lambda: len(seen) == 1)
    assert seen[0].job_id == 8  # type: ignore[attr-defined]


async def test_a_poison_message_lands_in_the_dead_letter_queue_with_its_reason(bus: Bus) -> None:
    seen = await _collect(bus, "test.poison", fail_times=100)
    await bus.publish(AnalysisRequested(job_id=9))

    async def parked() -> int:
        return len(await bus.dead_letters("test.poison"))

    for _ in range(300):
        if await parked():
            break
        await asyncio.sleep(0.05)
    letters = await bus.dead_letters("test.poison")
    assert not seen
    assert len(letters) == 1
    assert "transient failure" in letters[0].error
    assert letters[0].routing_key == "analysis.requested"


async def test_delayed_publish_arrives_after_the_delay(bus: Bus) -> None:
    seen = await _collect(bus, "test.delay")
    loop = asyncio.get_running_loop()
    start = loop.time()
    await bus.publish(AnalysisRequested(job_id=10), delay_s=0.5)
    await asyncio.sleep(0.2)
    assert not seen
    await _wait_for(lambda: len(seen) == 1)
    assert loop.time() - start >= 0.45
