"""Receiver test helpers: the service started in-process on port 0, and CT datasets to send."""

import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.uid import (
    CTImageStorage,
    generate_uid,
)
from sqlalchemy import select

from pulmogate.common.db.models import Instance, Series
from pulmogate.common.events import Event, SeriesArrived, SeriesResent
from pulmogate.common.outbox import OutboxRelay
from pulmogate.common.runtime import Context, close_context, open_context
from pulmogate.common.settings import Settings
from pulmogate.receiver.service import ReceiverService
from tests.fixtures.datasets import dicom_object, set_grey_pixels

AE_TITLE = "PULMOGATE"


@dataclass
class RunningReceiver:
    """A started receiver, its context and the series.arrived / series.resent events seen
    on the bus."""

    ctx: Context
    service: ReceiverService
    arrived: list[SeriesArrived] = field(default_factory=list)
    resent: list[SeriesResent] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.service.port

    @property
    def incoming(self) -> Path:
        return self.ctx.storage.incoming_folder()

    async def recorded(self) -> None:
        """Wait until the rows of every instance acknowledged so far are committed (they
        follow the acknowledgement in groups)."""
        if self.service.scp is not None:
            await self.service.scp.recorder.flush()

    async def series(self, series_uid: str) -> Series | None:
        await self.recorded()
        async with self.ctx.db.session() as session:
            return await session.scalar(select(Series).where(Series.series_uid == series_uid))

    async def instances(self, series_uid: str) -> list[Instance]:
        await self.recorded()
        async with self.ctx.db.session() as session:
            rows = await session.scalars(
                select(Instance).join(Series).where(Series.series_uid == series_uid)
            )
            return list(rows)

    def arrivals(self, series_uid: str) -> list[SeriesArrived]:
        return [e for e in self.arrived if e.series_uid == series_uid]

    async def wait_arrivals(self, series_uid: str, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``count`` series.arrived events for the series were delivered."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.arrivals(series_uid)) < count:
            if asyncio.get_running_loop().time() > deadline:
                series = await self.series(series_uid)
                raise AssertionError(
                    f"{len(self.arrivals(series_uid))} arrivals, series "
                    f"{series and (series.status, series.open_associations)}"
                )
            await asyncio.sleep(0.05)

    async def wait_status(self, series_uid: str, status: str, timeout: float = 10.0) -> Series:
        """Wait until the series row has ``status``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            series = await self.series(series_uid)
            if series is not None and series.status == status:
                return series
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"series never reached {status}: {series and series.status}")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def start_receiver(
    data_dir: Path, database_url: str, **overrides: Any
) -> AsyncIterator[RunningReceiver]:
    """Start the receiver on a free port with an outbox relay and a bus listener."""
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        broker_url="memory://",
        dicom_host="127.0.0.1",
        dicom_port=0,
        series_quiet_seconds=0.5,
        **{"accept_from": "any", **overrides},
    )
    ctx = await open_context(settings, migrate=not database_url)
    service = ReceiverService()
    running = RunningReceiver(ctx, service)

    async def on_arrived(event: Event) -> None:
        if isinstance(event, SeriesResent):
            running.resent.append(event)
        else:
            assert isinstance(event, SeriesArrived)
            running.arrived.append(event)

    await ctx.bus.subscribe("test.receiver", ["series.arrived", "series.resent"], on_arrived)
    ctx.spawn(OutboxRelay(ctx.db, ctx.bus, poll_s=0.2).run(), "outbox-relay")
    await service.start(ctx)
    try:
        yield running
    finally:
        await service.stop()
        await close_context(ctx)


ReceiverFactory = Callable[..., AbstractAsyncContextManager[RunningReceiver]]


@pytest.fixture
def receiver_on(tmp_path: Path, pg_url: str) -> ReceiverFactory:
    """Start a receiver on this module's Postgres database (``sqlite=True``: a temp SQLite)."""

    def factory(*, sqlite: bool = False, **overrides: Any) -> Any:
        return start_receiver(tmp_path / "data", "" if sqlite else pg_url, **overrides)

    return factory


def ct_slice(
    study_uid: str,
    series_uid: str,
    index: int,
    *,
    size: int = 64,
    sop_class: str = CTImageStorage,
    sop_uid: str | None = None,
    modality: str = "CT",
) -> Dataset:
    """One synthetic slice with file meta (Explicit VR Little Endian)."""
    ds = dicom_object(
        sop_class, study_uid=study_uid, series_uid=series_uid, modality=modality, sop_uid=sop_uid
    )
    ds.StudyDate = "20260101"
    ds.AccessionNumber = "ACC1"
    ds.StudyDescription = "CT CHEST"
    ds.SeriesDescription = "Receiver test"
    ds.InstanceNumber = index + 1
    ds.SliceThickness = "1.25"
    ds.PixelSpacing = ["0.7", "0.7"]
    ds.ImagePositionPatient = [0, 0, index * 1.25]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    rng = np.random.default_rng(index)
    set_grey_pixels(ds, rng.integers(0, 2000, (size, size), dtype=np.uint16))
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    return ds


def write_slices(out_dir: Path, count: int, **kwargs: Any) -> list[Path]:
    """Write ``count`` slices of one new series; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    paths = []
    for k in range(count):
        path = out_dir / f"slice{k:03d}.dcm"
        ct_slice(study_uid, series_uid, k, **kwargs).save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


async def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a dcmtk tool off the event loop (the receiver's handlers need the loop)."""
    return await asyncio.to_thread(subprocess.run, list(args), capture_output=True, text=True)
