"""A destination PACS for the reliability tests that records every C-STORE it is sent.

dcmtk's storescp overwrites a resent object under the same file name, so duplicates
would be invisible; this pynetdicom SCP keeps the SOP Instance UID of every request, in
order, and one copy per UID (what a PACS keeps). ``delay_s`` slows each C-STORE so a
test can kill the sender in the middle of an association.
"""

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.fixtures.gateway import Gateway, add_route, run_gateway
from tests.fixtures.infra import free_port
from tests.reliability.faults import wait_until


@dataclass
class RecordingSCP:
    """What the destination was sent: every request's SOP UID and one header per UID."""

    port: int
    ae_title: str
    requests: list[str] = field(default_factory=list)
    kept: dict[str, Dataset] = field(default_factory=dict)
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_store(self, event: Event) -> int:
        if self.delay_s:
            time.sleep(self.delay_s)
        ds = event.dataset
        uid = str(ds.SOPInstanceUID)
        with self.lock:
            self.requests.append(uid)
            self.kept[uid] = ds
        return 0x0000

    def received(self, uids: set[str]) -> list[str]:
        """Every request (duplicates included) for one of ``uids``."""
        with self.lock:
            return [u for u in self.requests if u in uids]

    def duplicates(self, uids: set[str]) -> dict[str, int]:
        """UIDs among ``uids`` that were sent more than once, with their counts."""
        return {u: n for u, n in Counter(self.received(uids)).items() if n > 1}

    @contextmanager
    def slowed(self, delay_s: float) -> Iterator[None]:
        """Each C-STORE takes ``delay_s`` inside the block (time to interrupt a delivery)."""
        self.delay_s = delay_s
        try:
            yield
        finally:
            self.delay_s = 0.0

    def wait_for_more_than(self, count: int, timeout: float) -> None:
        """Wait until more than ``count`` requests arrived (the first C-STOREs of a delivery)."""
        wait_until(lambda: len(self.requests) > count, timeout, "the first C-STOREs")


@contextmanager
def recording_scp(ae_title: str = "RECORDER") -> Iterator[RecordingSCP]:
    """Start a recording storage SCP on a free port."""
    ae = AE(ae_title=ae_title)
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(Verification)
    scp = RecordingSCP(port=free_port(), ae_title=ae_title)
    server = ae.start_server(
        ("127.0.0.1", scp.port),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, scp.on_store)],
    )
    assert server is not None
    try:
        yield scp
    finally:
        server.shutdown()


@contextmanager
def gateway_recorded_by(
    destination: RecordingSCP, tmp: Path, commands: list[list[str]], **settings: Any
) -> Iterator[Gateway]:
    """``run_gateway(tmp, commands, **settings)`` with one rule, ``recorder``, that sends
    every series' results to ``destination``."""
    with run_gateway(tmp, commands, **settings) as gw:
        add_route(gw, destination.port, dest_aet=destination.ae_title, name="recorder")
        yield gw
