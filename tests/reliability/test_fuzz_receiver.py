"""Hostile DICOM at the receiver's C-STORE handler, over real associations.

Mutated datasets (bit flips, truncation, inserted bytes, absurd pixel data lengths,
oversized dimensions, path-like UIDs) must get a C-STORE status (success, or a failure
with a reason) without hanging, crashing the service or writing outside storage; the
receiver answers C-ECHO afterwards and every success is a stored, recorded instance.
"""

import asyncio
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]
from sqlalchemy import select

from pulmogate.common.db.models import Instance
from services.receiver.tests.helpers import RunningReceiver, start_receiver
from tests.reliability.dicom_mutations import (
    ct_dataset,
    encode,
    hostile_headers,
    mutated_bodies,
)

SUCCESS = 0x0000
FAILURES = {0xC210, 0x0110, 0xA700, 0xA900, 0xC000}
EXAMPLES = {"raw": 120, "headers": 80}
SENT: dict[str, int] = {"examples": 0, "successes": 0, "failures": 0}


@dataclass
class BackgroundReceiver:
    """A receiver running on its own event loop in a thread (the test thread is the SCU)."""

    rx: RunningReceiver
    loop: asyncio.AbstractEventLoop
    data_dir: Path

    def run(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundReceiver]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    holder: list[RunningReceiver] = []

    async def serve() -> None:
        async with start_receiver(data_dir, "") as rx:
            holder.append(rx)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(60), "receiver did not start"
    try:
        yield BackgroundReceiver(holder[0], loop, data_dir)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


class Modality:
    """One association, re-opened whenever the receiver aborts it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ae = AE(ae_title="FUZZER")
        self.ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
        self.ae.add_requested_context(Verification)
        self.ae.dimse_timeout = 20
        self.ae.network_timeout = 20
        self.assoc: Association | None = None

    def association(self) -> Association:
        if self.assoc is None or not self.assoc.is_established:
            self.assoc = self.ae.associate("127.0.0.1", self.port, ae_title="PULMOGATE")
            assert self.assoc.is_established, "receiver refused a new association"
        return self.assoc

    def store_file(self, path: Path) -> int | None:
        answer = self.association().send_c_store(path)
        return int(answer.Status) if "Status" in answer else None

    def echo(self) -> int:
        return int(self.association().send_c_echo().Status)

    def close(self) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()


@pytest.fixture(scope="module")
def modality(receiver: BackgroundReceiver) -> Iterator[Modality]:
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes as they are
    scu = Modality(receiver.rx.port)
    try:
        yield scu
    finally:
        scu.close()
        _config.STORE_SEND_CHUNKED_DATASET = previous


def check_answer(status: int | None) -> None:
    SENT["examples"] += 1
    assert status is not None, "no C-STORE response"
    assert status == SUCCESS or status in FAILURES, f"unexpected status 0x{status:04X}"
    SENT["successes" if status == SUCCESS else "failures"] += 1


BASE_HEAD, BASE_BODY = encode(ct_dataset())


@settings(
    max_examples=EXAMPLES["raw"],
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=mutated_bodies(BASE_BODY))
def test_mutated_bytes_get_a_status_and_never_break_the_receiver(
    modality: Modality, tmp_path: Path, body: bytes
) -> None:
    path = tmp_path / "mutated.dcm"
    path.write_bytes(BASE_HEAD + body)
    check_answer(modality.store_file(path))


@settings(
    max_examples=EXAMPLES["headers"],
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ds=hostile_headers(), _salt=st.integers())
def test_hostile_headers_get_a_status_and_never_escape_storage(
    modality: Modality, tmp_path: Path, ds: object, _salt: int
) -> None:
    from pydicom import Dataset

    assert isinstance(ds, Dataset)
    path = tmp_path / "hostile.dcm"
    try:
        head, body = encode(ds)
    except (UnicodeError, TypeError, ValueError, struct.error):
        assume(False)  # pydicom will not even write it: not an input a peer can send
    path.write_bytes(head + body)
    check_answer(modality.store_file(path))


def test_after_the_fuzzing_the_receiver_answers_and_kept_only_sane_files(
    receiver: BackgroundReceiver, modality: Modality
) -> None:
    assert SENT["examples"] >= sum(EXAMPLES.values()), SENT
    assert modality.echo() == SUCCESS
    root = receiver.data_dir.resolve()
    stored = [p.resolve() for p in root.rglob("*") if p.is_file()]
    assert all(p.is_relative_to(root) for p in stored)
    dicom_files = [p for p in stored if p.suffix == ".dcm"]
    incoming = (receiver.rx.ctx.storage.incoming_folder()).resolve()
    assert all(p.is_relative_to(incoming) for p in dicom_files), dicom_files

    async def stored_paths() -> set[Path]:
        await receiver.rx.recorded()  # rows follow the answers in groups
        async with receiver.rx.ctx.db.session() as session:
            return {Path(p).resolve() for p in await session.scalars(select(Instance.path))}

    rows = receiver.run(stored_paths())
    assert isinstance(rows, set)
    # Every success is a row with its file, and no file is left without its row (a reused
    # SOP Instance UID in another series is refused and its file removed).
    assert rows == set(dicom_files)
    assert len(rows) <= SENT["successes"]
    print(f"fuzzed receiver: {SENT}")
