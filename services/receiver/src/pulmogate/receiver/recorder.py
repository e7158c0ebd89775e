"""Rows of acknowledged instances, recorded in groups on the service's event loop.

A C-STORE is acknowledged once its file is durable (see scp.py); its rows follow here, many
instances and associations to one transaction (one commit, one fsync of the database), in the
order they were stored. Nothing is dropped: a group that fails is retried entry by entry, so
one entry the database refuses never holds back the others, and each failing entry is
retried with a growing pause. Whatever is still pending when the process dies is rebuilt from
the files at the next start (recovery.py).
"""

import asyncio
import contextlib
import threading
from collections.abc import Callable
from datetime import datetime

import structlog

from pulmogate.common.db.session import Database
from pulmogate.common.dicom.intake.rows import Peer, StoredInstance
from pulmogate.common.dicom.intake.values import InstanceValues
from pulmogate.common.settings import RECEIVER_GROUP_INTERVAL_S as GROUP_INTERVAL_S
from pulmogate.receiver.markers import SeriesMarkers
from pulmogate.receiver.pending import PendingInstances
from pulmogate.receiver.records import AssociationEnded, Entry, GroupOutcome, record_group

log = structlog.get_logger("pulmogate.receiver")

GROUP_MAX = 500
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 10.0


class InstanceRecorder:
    """The queue of entries to record and the task that records them."""

    def __init__(
        self,
        db: Database,
        pending: PendingInstances,
        markers: SeriesMarkers,
        loop: asyncio.AbstractEventLoop,
        *,
        on_conflict: Callable[[str], None] = lambda _sop: None,
        interval_s: float = GROUP_INTERVAL_S,
    ) -> None:
        self.interval_s = interval_s
        self.db = db
        self.pending = pending
        self.markers = markers
        self.loop = loop
        self.on_conflict = on_conflict
        self._queue: list[Entry] = []
        # Submitted by association threads, not yet taken by the task. Only a task waiting
        # for entries is woken (one hop to the loop per group, not one per instance).
        self._incoming: list[Entry] = []
        self._lock = threading.Lock()
        self._waiting = False
        self._wake = asyncio.Event()
        self._submitted = 0
        self._settled = 0
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def submit(self, entry: Entry) -> None:
        """Queue an entry from any thread (entries of one thread keep their order)."""
        with self._lock:
            self._incoming.append(entry)
            self._submitted += 1
            wake, self._waiting = self._waiting, False
        if wake:
            self.loop.call_soon_threadsafe(self._wake.set)

    def commit(
        self, item: InstanceValues, peer: Peer, *, new_for_association: bool, received_at: datetime
    ) -> None:
        """The instance's file is durable: queue its rows (in the order of calls)."""
        self.submit(StoredInstance(item, peer, new_for_association, received_at))

    def _take_incoming(self) -> bool:
        """Move submitted entries to the queue; whether there is anything to record (when
        not, the task is marked waiting, under the same lock as ``submit``)."""
        with self._lock:
            self._queue.extend(self._incoming)
            self._incoming.clear()
            self._waiting = not self._queue
            return not self._waiting

    def start(self) -> None:
        """Run the recording task on the loop."""
        self._task = self.loop.create_task(self.run(), name="receiver-recorder")

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Record what is queued (within ``timeout_s``), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        left = len(self._queue) + len(self._incoming)
        if left:
            log.warning("rows left for recovery at the next start", entries=left)

    async def flush(self) -> None:
        """Wait until every entry submitted before this call is recorded."""
        target = self._submitted
        async with self._progress:
            await self._progress.wait_for(lambda: self._settled >= target)

    async def run(self) -> None:
        """Record groups until cancelled."""
        pause = RETRY_INITIAL_S
        while True:
            if not self._take_incoming():
                await self._wake.wait()
                self._wake.clear()
                continue
            await asyncio.sleep(self.interval_s)  # the group fills meanwhile
            self._take_incoming()
            group = self._queue[:GROUP_MAX]
            try:
                outcome = await record_group(self.db, group)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "recording a group failed, retrying entry by entry",
                    entries=len(group),
                    error=repr(exc),
                )
                if not await self._record_one_by_one(group):
                    await asyncio.sleep(pause)
                    pause = min(2 * pause, RETRY_MAX_S)
                continue
            pause = RETRY_INITIAL_S
            await self._settle(len(group), outcome)

    async def _record_one_by_one(self, group: list[Entry]) -> bool:
        """Record the group's entries alone, in order, up to the first that fails; whether
        all were recorded (a failing entry stays at the head of the queue)."""
        for entry in group:
            try:
                outcome = await record_group(self.db, [entry])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                sop = entry.item.sop_instance_uid if isinstance(entry, StoredInstance) else ""
                log.error(
                    "could not record an acknowledged instance, will retry",
                    sop_instance_uid=sop,
                    error=repr(exc),
                )
                return False
            await self._settle(1, outcome)
        return True

    async def _settle(self, count: int, outcome: GroupOutcome) -> None:
        """Take ``count`` recorded entries off the queue and release what they held."""
        done, self._queue = self._queue[:count], self._queue[count:]
        for sop in outcome.conflicts:
            log.error(
                "acknowledged instance not recorded: its SOP Instance UID was stored in "
                "another series meanwhile (file kept)",
                sop_instance_uid=sop,
            )
            self.on_conflict(sop)
        for entry in done:
            if isinstance(entry, StoredInstance):
                self.pending.settle(entry.item.sop_instance_uid)
            elif isinstance(entry, AssociationEnded):
                for key in entry.held:
                    self.markers.release(*key)
        self.markers.drop_idle(self.pending.holds)
        async with self._progress:
            self._settled += count
            self._progress.notify_all()
