"""The metrics port of a bus worker: real sockets, the process's real registry."""

import asyncio
import shutil
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pulmogate.common import metrics_server
from pulmogate.common.metrics import track_storage
from pulmogate.common.metrics_server import MetricsServer
from tests.fixtures.infra import free_port


async def request(port: int, raw: bytes) -> bytes:
    """Send raw bytes, read the whole answer (the server closes after one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def test_metrics_port_serves_the_registry_with_the_storage_gauge(tmp_path: Path) -> None:
    track_storage(tmp_path / "storage")
    port = free_port()
    server = MetricsServer("127.0.0.1", port)
    await server.start()
    try:
        answer = await request(port, get("/metrics"))
    finally:
        await server.stop()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert f"Content-Length: {len(body)}".encode() in head
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    usage = shutil.disk_usage(tmp_path / "storage")
    assert abs(samples["pulmogate_storage_free_percent"] - 100 * usage.free / usage.total) < 2
    assert "pulmogate_instances_received_total" in body.decode()


async def test_metrics_port_wants_the_token_and_answers_only_get_metrics() -> None:
    port = free_port()
    server = MetricsServer("127.0.0.1", port, token="s3cret")
    await server.start()
    try:
        without = await request(port, get("/metrics"))
        wrong = await request(port, get("/metrics", "Authorization: Bearer nope"))
        right = await request(port, get("/metrics", "authorization: bearer s3cret"))
        elsewhere = await request(port, get("/", "Authorization: Bearer s3cret"))
        posted = await request(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    finally:
        await server.stop()
    assert without.startswith(b"HTTP/1.1 401") and b"PULMOGATE_METRICS_TOKEN" in without
    assert wrong.startswith(b"HTTP/1.1 401")
    assert right.startswith(b"HTTP/1.1 200")
    assert elsewhere.startswith(b"HTTP/1.1 404")
    assert posted.startswith(b"HTTP/1.1 405")


async def test_oversized_and_silent_requests_are_dropped_and_the_port_still_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics_server, "READ_TIMEOUT_S", 0.5)
    port = free_port()
    server = MetricsServer("127.0.0.1", port)
    await server.start()
    try:
        oversized = await request(port, b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 20000)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        silent = await asyncio.wait_for(reader.read(), 5)  # says nothing: cut off at the deadline
        writer.close()
        after = await request(port, get("/metrics"))
    finally:
        await server.stop()
    assert oversized == b"" and silent == b""
    assert after.startswith(b"HTTP/1.1 200")


async def test_a_taken_metrics_port_stops_the_process_with_the_reason() -> None:
    port = free_port()
    first = MetricsServer("127.0.0.1", port)
    await first.start()
    try:
        with pytest.raises(SystemExit, match=f"metrics port 127.0.0.1:{port} cannot be opened"):
            await MetricsServer("127.0.0.1", port).start()
    finally:
        await first.stop()
