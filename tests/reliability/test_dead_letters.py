"""Poison messages on RabbitMQ: a message that always fails its consumer is retried, parked
in the dead-letter queue with the error, listed by the API and can be requeued.

The receiver, the router and the API run as ``pulmogate`` processes on a real broker and
database; the poison is a ``series.arrived`` whose body does not validate (a real consumer
failure, no fault injected into the code).
"""

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pulmogate.common.bus import make_bus
from pulmogate.common.events import SeriesArrived
from tests.fixtures.gateway import Gateway, run_gateway
from tests.reliability.faults import wait_until

pytestmark = pytest.mark.e2e

POISON = b'{"series_id": "not-a-number", "study_uid": "1.2.3"}'


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, pg_url: str, amqp_url: str
) -> Iterator[Gateway]:
    with run_gateway(
        tmp_path_factory.mktemp("dlq"),
        [["receiver"], ["router"], ["api"]],
        database_url=pg_url,
        broker_url=amqp_url,
        extra_env={"PULMOGATE_LOG_LEVEL": "INFO"},
    ) as gw:
        yield gw


def publish(amqp_url: str, routing_key: str, body: bytes) -> None:
    async def go() -> None:
        bus = make_bus(amqp_url)
        await bus.connect()
        await bus.publish_raw(routing_key, body)
        await bus.close()

    asyncio.run(go())


def dead_letters(gw: Gateway) -> list[dict[str, Any]]:
    with gw.client() as client:
        response = client.get("/api/v1/dead-letters")
    assert response.status_code == 200, response.text
    letters: list[dict[str, Any]] = response.json()
    return letters


def failed_attempts(gw: Gateway) -> list[int]:
    """The attempt numbers the router logged for failing handlers, in order."""
    attempts = []
    for line in (gw.log_dir / "router.log").read_text().splitlines():
        if line.startswith("{") and '"handler failed' in line:
            attempts.append(int(json.loads(line)["attempt"]))
    return attempts


def test_poison_message_is_dead_lettered_with_its_error_listed_and_requeued(
    gateway: Gateway, amqp_url: str
) -> None:
    publish(amqp_url, "series.arrived", POISON)
    wait_until(lambda: len(dead_letters(gateway)) == 1, 30, "the message to be parked", 0.5)
    [letter] = dead_letters(gateway)
    assert letter["queue"] == "pulmogate.router"
    assert letter["routing_key"] == "series.arrived"
    assert letter["body"] == POISON.decode()
    assert "ValidationError" in letter["error"] and "series_id" in letter["error"]
    assert failed_attempts(gateway) == [1, 2, 3], "three attempts, then parked, no loop"

    with gateway.client() as client:
        unknown = client.post("/api/v1/dead-letters/pulmogate.nowhere/requeue")
        requeued = client.post("/api/v1/dead-letters/pulmogate.router/requeue")
    assert unknown.status_code == 404 and "pulmogate.router" in unknown.json()["detail"]
    assert requeued.status_code == 200, requeued.text
    assert requeued.json() == {"queue": "pulmogate.router", "requeued": 1}

    # Back in its queue with its full number of attempts; still poison, so parked again,
    # once (the requeued copy replaced the old one).
    wait_until(lambda: len(failed_attempts(gateway)) == 6, 30, "three more attempts", 0.5)
    wait_until(lambda: len(dead_letters(gateway)) == 1, 10, "the message parked again", 0.5)
    assert failed_attempts(gateway) == [1, 2, 3, 1, 2, 3]
    gateway.assert_alive()


def test_dead_letter_routes_need_a_signed_in_user(gateway: Gateway) -> None:
    listed = httpx.get(f"{gateway.api}/api/v1/dead-letters", timeout=10)
    requeue = httpx.post(f"{gateway.api}/api/v1/dead-letters/pulmogate.router/requeue", timeout=10)
    assert listed.status_code == 401 and requeue.status_code == 401


def test_an_unreadable_message_does_not_stop_the_consumer(gateway: Gateway, amqp_url: str) -> None:
    """After the poison, a valid message for an unknown series is still consumed."""
    valid = SeriesArrived(
        series_id=987654,
        study_uid="1.2.3",
        series_uid="1.2.3.4",
        calling_ae="CT",
        called_ae="PULMOGATE",
        peer_ip="127.0.0.1",
        instance_count=1,
    )
    publish(amqp_url, valid.routing_key, valid.model_dump_json().encode())
    wait_until(lambda: "series.arrived for an unknown series" in gateway.logs(), 20, "consumption")


async def test_memory_bus_parks_and_requeues_like_rabbitmq() -> None:
    """The embedded bus (``pulmogate up``) follows the same policy: 3 attempts, parked
    with the error, requeued with its attempts reset."""
    from pulmogate.common.bus import base
    from pulmogate.common.bus.memory import MemoryBus
    from pulmogate.common.events import Event

    seen: list[int] = []

    async def handler(event: Event) -> None:
        seen.append(1)  # never reached: the poison fails to decode

    bus = MemoryBus()
    delays = base.RETRY_DELAYS_S
    base.RETRY_DELAYS_S = (0.01, 0.01)  # the policy, not its timing, is under test
    try:
        await bus.subscribe("q", ["series.arrived"], handler)
        await bus.publish_raw("series.arrived", POISON)
        for _ in range(200):
            if await bus.dead_letters("q"):
                break
            await asyncio.sleep(0.01)
        [letter] = await bus.dead_letters("q")
        assert "ValidationError" in letter.error and len(seen) == 0
        assert await bus.requeue_dead_letters("q") == 1
        assert await bus.dead_letters("q") == []
        for _ in range(200):
            if await bus.dead_letters("q"):
                break
            await asyncio.sleep(0.01)
        assert len(await bus.dead_letters("q")) == 1
    finally:
        base.RETRY_DELAYS_S = delays
        await bus.close()
