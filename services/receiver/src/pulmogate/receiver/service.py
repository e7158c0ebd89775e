"""The receiver service: DICOM SCP in pynetdicom's threads, series completion on the loop."""

import asyncio

import structlog

from pulmogate.common.runtime import Context
from pulmogate.receiver.admission import AdmissionLimits
from pulmogate.receiver.bounded_dul import EdgeLimits
from pulmogate.receiver.completion import run_completion
from pulmogate.receiver.records import reset_open_associations
from pulmogate.receiver.recovery import recover_unrecorded
from pulmogate.receiver.scp import StoreSCP

log = structlog.get_logger("pulmogate.receiver")


class ReceiverService:
    """C-ECHO/C-STORE SCP that files CT instances and announces complete series."""

    name = "receiver"

    def __init__(self) -> None:
        self.scp: StoreSCP | None = None
        self._completion: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The TCP port the SCP listens on (the bound one when configured as 0)."""
        assert self.scp is not None, "receiver not started"
        return self.scp.port

    async def start(self, ctx: Context) -> None:
        """Reconcile what a previous process left (open series, acknowledged instances
        without rows), listen, start recording and completion."""
        settings = ctx.settings
        reset = await reset_open_associations(ctx.db)
        if reset:
            log.info("open associations of a previous process cleared", series=reset)
        self.scp = StoreSCP(
            ae_title=settings.ae_title,
            storage=ctx.storage,
            db=ctx.db,
            loop=asyncio.get_running_loop(),
            accept_from=settings.accept_from,
            disk_max_used_percent=settings.disk_max_used_percent,
            max_associations=settings.max_associations,
            non_ct_objects=settings.non_ct_objects,
            accept_echo_from_unknown=settings.accept_echo_from_unknown,
            group_interval_s=settings.receiver_group_interval_s,
            edge=EdgeLimits(
                max_pdu_length=settings.dicom_max_pdu_length,
                max_instance_bytes=int(settings.dicom_max_instance_mb * (1 << 20)),
                request_timeout_s=settings.dicom_request_timeout_s,
                idle_timeout_s=settings.dicom_idle_timeout_s,
            ),
            admission=AdmissionLimits(
                max_associations=settings.max_associations,
                pending_per_address=settings.dicom_max_pending_per_address,
                per_peer=settings.dicom_max_associations_per_peer,
                unknown=settings.dicom_max_unknown_associations,
            ),
        )
        await recover_unrecorded(ctx.db, ctx.storage, self.scp.markers)
        self.scp.recorder.start()
        await asyncio.to_thread(self.scp.start, settings.dicom_host, settings.dicom_port)
        self._completion = ctx.spawn(
            run_completion(
                ctx.db,
                quiet_s=settings.series_quiet_seconds,
                idle_s=settings.series_idle_seconds,
                pending=self.scp.pending.holds,
            ),
            "receiver-completion",
        )

    async def stop(self) -> None:
        """Stop listening (open associations are aborted), record what is acknowledged,
        stop the completion loop."""
        if self.scp is not None:
            # Association threads may be waiting on this loop: shut down off-loop.
            await asyncio.to_thread(self.scp.stop)
            await self.scp.recorder.stop()
            await self.scp.sop_index.close()
            self.scp = None
        if self._completion is not None:
            self._completion.cancel()
            self._completion = None
