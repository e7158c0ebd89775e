"""A running sender on real backends, a pynetdicom storage SCP as the PACS, and output files."""

import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from pydicom.uid import SecondaryCaptureImageStorage
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.transport import ThreadedAssociationServer

from pulmogate.common.outbox import OutboxRelay
from pulmogate.common.runtime import Context
from pulmogate.common.settings import Settings
from pulmogate.sender.service import SenderService
from tests.fixtures.datasets import dicom_object, set_grey_pixels
from tests.fixtures.harness import BACKENDS, backend_settings, clean_context
from tests.fixtures.infra import eventually, free_port


@dataclass
class StorageSCP:
    """An in-process PACS: counts what it stores, answers ``status`` to every C-STORE."""

    port: int
    ae_title: str = "PACS"
    status: int = 0x0000
    received: Counter[str] = field(default_factory=Counter)
    server: ThreadedAssociationServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _on_store(self, event: evt.Event) -> int:
        if self.status == 0x0000:
            with self.lock:
                request = cast(C_STORE, event.request)
                self.received[str(request.AffectedSOPInstanceUID)] += 1
        return self.status

    def start(self) -> None:
        """Listen on the port (the called AE title must match)."""
        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = True
        ae.supported_contexts = AllStoragePresentationContexts
        self.server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
        )

    def stop(self) -> None:
        """Stop listening."""
        if self.server is not None:
            self.server.shutdown()
            self.server = None


@pytest.fixture
def pacs() -> Iterator[StorageSCP]:
    """A storage SCP on a free loopback port (not started: tests choose when it is up)."""
    scp = StorageSCP(port=free_port())
    yield scp
    scp.stop()


def write_outputs(directory: Path, count: int) -> list[tuple[str, Path]]:
    """Small Secondary Capture files, as inference writes its outputs; (SOP UID, path) each."""
    directory.mkdir(parents=True, exist_ok=True)
    study, series = f"2.25.{uuid.uuid4().int}", f"2.25.{uuid.uuid4().int}"
    written = []
    for k in range(count):
        uid = f"2.25.{uuid.uuid4().int}"
        ds = dicom_object(
            SecondaryCaptureImageStorage,
            study_uid=study,
            series_uid=series,
            modality="OT",
            sop_uid=uid,
            patient_name="TEST^OUTPUT",
            patient_id="T1",
        )
        ds.InstanceNumber = k + 1
        set_grey_pixels(ds, np.full((8, 8), k, dtype=np.uint8))
        path = directory / f"{uid}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append((uid, path))
    return written


@dataclass
class SenderHarness:
    """The sender and its context."""

    ctx: Context
    service: SenderService

    async def eventually(self, check: Callable[[], object], timeout_s: float = 20.0) -> None:
        """Wait until ``check()`` is truthy (async checks are awaited)."""
        await eventually(check, timeout_s)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for one backend pair with tiny backoff delays."""
    return backend_settings(
        request,
        tmp_path,
        "sender.db",
        delivery_max_attempts=3,
        delivery_backoff_initial_s=0.2,
        delivery_backoff_max_s=0.4,
        delivery_timeout_s=5.0,
        scu_ae_title="PULMOGATE",
    )


@pytest.fixture
async def context(backend: Settings) -> AsyncIterator[Context]:
    """A connected context on an emptied database."""
    async for ctx in clean_context(backend):
        yield ctx


async def start_sender(ctx: Context) -> SenderHarness:
    """Start the sender and the outbox relay."""
    harness = SenderHarness(ctx, SenderService())
    await harness.service.start(ctx)
    ctx.spawn(OutboxRelay(ctx.db, ctx.bus, poll_s=0.1).run(), "outbox-relay")
    return harness


@pytest.fixture
async def sender(context: Context) -> AsyncIterator[SenderHarness]:
    """A started sender on an empty database."""
    harness = await start_sender(context)
    yield harness
    await harness.service.stop()
