"""Result pictures in each destination's image encoding, stored once per encoding, sent to
real peers that accept and that refuse each syntax: dcmtk storescp with and without its
``+x`` options, Orthanc with all and with only uncompressed syntaxes, pynetdicom SCPs.

The job is analysed by the real inference service (real engine on a small phantom) and
delivered by the real sender; every delivered object passes dciodvfy, and the delivered
pictures decode to the uncompressed rendering (exactly when lossless, above a PSNR bound
when JPEG)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts, build_context
from sqlalchemy import select

from pulmogate.common.db.models import (
    Delivery,
    DeliveryStatus,
    Destination,
    Instance,
    Job,
    JobLog,
    JobStatus,
    OutputObject,
    RoutingRule,
    RuleDestination,
    Series,
)
from pulmogate.common.events import AnalysisRequested, DeliveryRequested
from pulmogate.common.outbox import OutboxRelay
from pulmogate.common.runtime import Context, close_context, open_context
from pulmogate.common.settings import Settings
from pulmogate.inference.analysis import default_segmenter
from pulmogate.inference.service import InferenceService
from pulmogate.sender.service import SenderService
from tests.fixtures import quirks
from tests.fixtures.dciodvfy import dciodvfy_errors
from tests.fixtures.gateway import storescp
from tests.fixtures.infra import eventually, free_port
from tests.fixtures.orthanc import run_orthanc

# JPEG Baseline at quality 90 with 4:2:2 chroma keeps the overlay above this PSNR against
# the uncompressed rendering (about 36 dB on this phantom; 32 dB is the usual bound for
# "visually lossless" screen pictures).
MIN_JPEG_PSNR_DB = 30.0
UNCOMPRESSED_ONLY = [str(ImplicitVRLittleEndian), str(ExplicitVRLittleEndian)]


@dataclass
class PynetdicomSCP:
    """A pynetdicom storage SCP that keeps each object as a Part 10 file."""

    folder: Path
    syntaxes: list[str]
    ae_title: str = "PYSCP"
    port: int = field(default_factory=free_port)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _on_store(self, event: evt.Event) -> int:
        data = event.encoded_dataset()
        with self.lock:
            (self.folder / f"{uuid.uuid4().hex}.dcm").write_bytes(data)
        return 0x0000

    @contextmanager
    def running(self) -> Iterator[PynetdicomSCP]:
        """Listen on the port for as long as the block runs."""
        self.folder.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title=self.ae_title)
        ae.supported_contexts = [
            build_context(cast(UID, cx.abstract_syntax), self.syntaxes)
            for cx in AllStoragePresentationContexts
        ]
        server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
        )
        assert server is not None
        try:
            yield self
        finally:
            server.shutdown()


@dataclass(frozen=True)
class Peer:
    """A destination under test: its name, the encoding it asks for, what it should get."""

    name: str
    encoding: str
    picture_syntax: UID
    seg_syntax: UID
    port: int = 0
    ae_title: str = ""
    folder: Path | None = None
    orthanc_url: str | None = None

    @property
    def falls_back(self) -> bool:
        """True when the peer refuses the preferred syntax and gets uncompressed."""
        return self.picture_syntax == ExplicitVRLittleEndian and self.encoding != "uncompressed"


def received_files(peer: Peer, into: Path) -> list[Path]:
    """The objects the peer holds, as files (Orthanc's fetched over its REST API)."""
    if peer.orthanc_url is None:
        assert peer.folder is not None
        return sorted(p for p in peer.folder.iterdir() if p.is_file())
    import httpx

    into.mkdir(parents=True, exist_ok=True)
    paths = []
    with httpx.Client(base_url=peer.orthanc_url, timeout=30) as client:
        for instance in client.get("/instances").json():
            path = into / f"{instance}.dcm"
            path.write_bytes(client.get(f"/instances/{instance}/file").content)
            paths.append(path)
    return paths


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[Context]:
    settings = Settings(
        data_dir=tmp_path / "gateway",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        broker_url="memory://",
        delivery_max_attempts=2,
        delivery_backoff_initial_s=0.2,
        delivery_backoff_max_s=0.4,
        delivery_timeout_s=20.0,
        log_format="console",
    )
    ctx = await open_context(settings, migrate=True)
    yield ctx
    await close_context(ctx)


async def analysed_job(ctx: Context, tmp_path: Path, destinations: list[Peer]) -> int:
    """A phantom series analysed by the real inference service under a rule sending to
    ``destinations``; returns the job (ANALYSED, outputs stored)."""
    folder = tmp_path / "series"
    quirks.phantom_series(folder, slices=24, size=256, pixel_mm=1.4)
    paths = sorted(folder.glob("*.dcm"))
    header = dcmread(paths[0], stop_before_pixels=True)
    async with ctx.db.session() as session:
        rule = RoutingRule(name=f"rule-{uuid.uuid4().hex[:6]}")
        session.add(rule)
        await session.flush()
        for peer in destinations:
            destination = Destination(
                name=peer.name,
                host="127.0.0.1",
                port=peer.port,
                ae_title=peer.ae_title,
                image_encoding=peer.encoding,
            )
            session.add(destination)
            await session.flush()
            session.add(RuleDestination(rule_id=rule.id, destination_id=destination.id))
        series = Series(
            series_uid=str(header.SeriesInstanceUID),
            study_uid=str(header.StudyInstanceUID),
            modality="CT",
        )
        session.add(series)
        await session.flush()
        for path in paths:
            ds = dcmread(path, stop_before_pixels=True)
            session.add(
                Instance(
                    series_id=series.id,
                    sop_instance_uid=str(ds.SOPInstanceUID),
                    sop_class_uid=str(ds.SOPClassUID),
                    transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
                    path=str(path),
                )
            )
        job = Job(series_id=series.id, rule_id=rule.id, status=JobStatus.QUEUED)
        session.add(job)
        await session.flush()
        job_id = job.id
    service = InferenceService()
    service.ctx, service.segmenter = ctx, default_segmenter()
    await service.on_event(AnalysisRequested(job_id=job_id))
    async with ctx.db.session() as session:
        analysed = await session.get(Job, job_id)
        assert analysed is not None
        assert analysed.status == JobStatus.ANALYSED, analysed.reason
    return job_id


async def deliver(ctx: Context, job_id: int, timeout_s: float = 120.0) -> None:
    """Plan one delivery per destination of the job's rule (as the router does), let the
    real sender send them and wait until every one is final."""
    async with ctx.db.session() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        job.status = JobStatus.DELIVERING
        rule_destinations = await session.scalars(
            select(RuleDestination.destination_id).where(RuleDestination.rule_id == job.rule_id)
        )
        known = set(
            await session.scalars(select(Delivery.destination_id).where(Delivery.job_id == job_id))
        )
        for destination_id in rule_destinations:
            if destination_id not in known:
                session.add(Delivery(job_id=job_id, destination_id=destination_id))
        await session.flush()
        deliveries = list(await session.scalars(select(Delivery).where(Delivery.job_id == job_id)))
        for delivery in deliveries:
            delivery.status = DeliveryStatus.PENDING
            delivery.attempts = 0
        ids = [d.id for d in deliveries]
    for delivery_id in ids:
        await ctx.bus.publish(DeliveryRequested(delivery_id=delivery_id))

    async def all_final() -> bool:
        async with ctx.db.session() as session:
            statuses = await session.scalars(
                select(Delivery.status).where(Delivery.job_id == job_id)
            )
            return all(s in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED) for s in statuses)

    await eventually(all_final, timeout_s)


async def start_sender(ctx: Context) -> SenderService:
    """The real sender, with the outbox relay that publishes its retries."""
    sender = SenderService()
    await sender.start(ctx)
    ctx.spawn(OutboxRelay(ctx.db, ctx.bus, poll_s=0.1).run(), "outbox-relay")
    return sender


async def attempts(ctx: Context, job_id: int) -> list[int]:
    async with ctx.db.session() as session:
        return list(
            await session.scalars(select(Delivery.attempts).where(Delivery.job_id == job_id))
        )


async def job_log(ctx: Context, job_id: int) -> list[str]:
    async with ctx.db.session() as session:
        return list(
            await session.scalars(
                select(JobLog.message).where(JobLog.job_id == job_id).order_by(JobLog.id)
            )
        )


async def outputs(ctx: Context, job_id: int) -> list[OutputObject]:
    async with ctx.db.session() as session:
        return list(
            await session.scalars(select(OutputObject).where(OutputObject.job_id == job_id))
        )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit pictures, in dB."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@contextmanager
def peers(tmp_path: Path) -> Iterator[list[Peer]]:
    """Every peer under test, running: (name, encoding asked for, syntax expected for the
    pictures, for the SEG)."""
    with ExitStack() as stack:
        made: list[Peer] = []

        def dcmtk(name: str, encoding: str, options: tuple[str, ...], pic: UID, seg: UID) -> None:
            port, folder = stack.enter_context(storescp(tmp_path, name, options))
            made.append(Peer(name, encoding, pic, seg, port, name, folder))

        def pynet(name: str, encoding: str, syntaxes: list[str], pic: UID, seg: UID) -> None:
            scp = stack.enter_context(PynetdicomSCP(tmp_path / name, syntaxes, name).running())
            made.append(Peer(name, encoding, pic, seg, scp.port, name, scp.folder))

        def orthanc(name: str, encoding: str, extra: dict[str, object], pic: UID, seg: UID) -> None:
            server = stack.enter_context(run_orthanc(tmp_path / name, {}, extra))
            made.append(
                Peer(name, encoding, pic, seg, server.dicom_port, server.aet, None, server.url)
            )

        (tmp_path / "orthanc-all").mkdir()
        (tmp_path / "orthanc-plain").mkdir()
        explicit, deflated = ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian
        dcmtk("SCP_PLAIN", "jpeg", (), explicit, explicit)  # storescp without +x: uncompressed
        dcmtk("SCP_PLAIN_U", "uncompressed", (), explicit, explicit)
        dcmtk("SCP_XY", "jpeg", ("+xy",), JPEGBaseline8Bit, explicit)
        dcmtk("SCP_XT", "jpeg-ls", ("+xt",), JPEGLSLossless, explicit)
        dcmtk("SCP_XR", "rle", ("+xr",), RLELossless, explicit)
        dcmtk("SCP_XD", "jpeg-ls", ("+xd",), explicit, deflated)  # deflate, no JPEG-LS
        dcmtk("SCP_XA_U", "uncompressed", ("+xa",), explicit, explicit)
        orthanc("orthanc-all", "jpeg", {}, JPEGBaseline8Bit, deflated)
        orthanc(
            "orthanc-plain",
            "rle",
            {"AcceptedTransferSyntaxes": UNCOMPRESSED_ONLY},
            explicit,
            explicit,
        )
        all_syntaxes = [
            *UNCOMPRESSED_ONLY,
            str(deflated),
            str(JPEGBaseline8Bit),
            str(JPEGLSLossless),
            str(RLELossless),
        ]
        pynet("PY_ALL", "jpeg-ls", all_syntaxes, JPEGLSLossless, deflated)
        pynet("PY_PLAIN", "jpeg", UNCOMPRESSED_ONLY, explicit, explicit)
        yield made


async def test_each_peer_gets_what_it_accepted_and_every_object_passes_dciodvfy(
    context: Context, tmp_path: Path
) -> None:
    with peers(tmp_path) as running:
        job_id = await analysed_job(context, tmp_path, running)
        sender = await start_sender(context)
        try:
            await deliver(context, job_id)
        finally:
            await sender.stop()
        # Each in one association: no response lost to pynetdicom's reactor (keep_responses).
        assert await attempts(context, job_id) == [1] * len(running)
        results = await outputs(context, job_id)
        log = await job_log(context, job_id)
        async with context.db.session() as session:
            job = await session.get(Job, job_id)
            assert job is not None
            assert job.status == JobStatus.DONE, job.reason
        kinds = {o.sop_instance_uid: o.kind for o in results}
        # The uncompressed pictures as rendered (stored for the destinations asking for them).
        reference = {
            o.sop_instance_uid: dcmread(
                context.storage.result_path(job_id, o.kind, o.sop_instance_uid, "uncompressed")
            ).pixel_array
            for o in results
            if o.kind in ("overlay", "summary")
        }
        for peer in running:
            files = received_files(peer, tmp_path / f"fetched-{peer.name}")
            got = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}
            assert set(got) == set(kinds), peer.name  # every object, once
            for uid, path in got.items():
                ds = dcmread(path)
                syntax = ds.file_meta.TransferSyntaxUID
                kind = kinds[uid]
                if kind in ("overlay", "summary"):
                    assert syntax == peer.picture_syntax, (peer.name, kind, syntax.name)
                    quality = psnr(ds.pixel_array, reference[uid])
                    if syntax == JPEGBaseline8Bit:
                        assert quality >= MIN_JPEG_PSNR_DB, (peer.name, kind, quality)
                        assert ds.LossyImageCompression == "01"
                        assert ds.LossyImageCompressionMethod == "ISO_10918_1"
                        assert float(ds.LossyImageCompressionRatio) > 2.0
                        assert ds.PhotometricInterpretation == "YBR_FULL_422"
                    elif peer.encoding == "jpeg":  # decoded from the stored JPEG
                        assert ds.LossyImageCompression == "01", peer.name
                        assert quality >= MIN_JPEG_PSNR_DB, (peer.name, kind, quality)
                    else:
                        assert quality == float("inf"), (peer.name, kind, syntax.name)
                        assert "LossyImageCompression" not in ds, peer.name
                elif kind == "seg":
                    assert syntax == peer.seg_syntax, (peer.name, syntax.name)
                else:
                    assert syntax == ExplicitVRLittleEndian, (peer.name, kind, syntax.name)
                assert dciodvfy_errors(path) == [], (peer.name, kind, syntax.name)
            refused = [line for line in log if line.startswith(f"{peer.name} did not accept")]
            warned = [line for line in refused if "pictures sent uncompressed" in line]
            assert bool(warned) == peer.falls_back, (peer.name, warned)
            seg_inflated = peer.seg_syntax != DeflatedExplicitVRLittleEndian
            assert len(refused) - len(warned) == (seg_inflated and peer.encoding != "uncompressed")


async def test_pictures_are_stored_once_per_encoding_of_the_rules_destinations(
    context: Context, tmp_path: Path
) -> None:
    asked = [
        Peer("A", "rle", RLELossless, ExplicitVRLittleEndian, 104, "A"),
        Peer("B", "uncompressed", ExplicitVRLittleEndian, ExplicitVRLittleEndian, 104, "B"),
        Peer("C", "rle", RLELossless, ExplicitVRLittleEndian, 104, "C"),
    ]
    job_id = await analysed_job(context, tmp_path, asked)

    results = await outputs(context, job_id)
    assert {o.kind for o in results} == {"overlay", "summary", "sr", "seg"}
    root = context.storage.results_folder(job_id)
    for o in results:
        primary = dcmread(o.path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        folders = sorted(p.name for p in (root / o.kind).iterdir() if p.is_dir())
        if o.kind in ("overlay", "summary"):
            assert primary == RLELossless  # the first of rle, uncompressed
            assert folders == ["uncompressed"]
            variant = context.storage.result_path(job_id, o.kind, o.sop_instance_uid, "rle")
            assert not variant.exists()  # the primary is the rle file: stored once
        elif o.kind == "seg":
            assert primary == DeflatedExplicitVRLittleEndian and folders == []
        else:
            assert primary == ExplicitVRLittleEndian and folders == []


async def test_a_resend_and_a_destination_added_later_encode_nothing_twice(
    context: Context, tmp_path: Path
) -> None:
    first = PynetdicomSCP(tmp_path / "first", [str(JPEGBaseline8Bit), *UNCOMPRESSED_ONLY], "FIRST")
    later = PynetdicomSCP(tmp_path / "later", [str(JPEGLSLossless), *UNCOMPRESSED_ONLY], "LATER")
    with first.running(), later.running():
        job_id = await analysed_job(
            context,
            tmp_path,
            [Peer("first", "jpeg", JPEGBaseline8Bit, ExplicitVRLittleEndian, first.port, "FIRST")],
        )
        sender = await start_sender(context)
        try:
            await deliver(context, job_id)
            pictures = [
                o for o in await outputs(context, job_id) if o.kind in ("overlay", "summary")
            ]
            async with context.db.session() as session:  # added to the rule after the analysis
                job = await session.get(Job, job_id)
                assert job is not None
                destination = Destination(
                    name="later",
                    host="127.0.0.1",
                    port=later.port,
                    ae_title="LATER",
                    image_encoding="jpeg-ls",
                )
                session.add(destination)
                await session.flush()
                session.add(RuleDestination(rule_id=job.rule_id, destination_id=destination.id))
            await deliver(context, job_id)  # a resend to both
            await deliver(context, job_id)  # and another
        finally:
            await sender.stop()
    log = await job_log(context, job_id)
    encoded = [line for line in log if line.startswith("encoded ")]
    assert encoded == [
        f"encoded {len(pictures)} pictures as jpeg-ls for later (stored for later sends)"
    ]
    delivered = [line for line in log if line.startswith("delivered ")]
    assert len([line for line in delivered if " to first " in line]) == 3
    assert len([line for line in delivered if " to later " in line]) == 2
    for o in pictures:
        stored = context.storage.result_path(job_id, o.kind, o.sop_instance_uid, "jpeg-ls")
        assert (
            dcmread(stored, stop_before_pixels=True).file_meta.TransferSyntaxUID == JPEGLSLossless
        )
        assert dcmread(stored, stop_before_pixels=True).LossyImageCompression == "01"
    syntaxes = {
        dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID
        for p in later.folder.iterdir()
        if dcmread(p, stop_before_pixels=True).SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    }
    assert syntaxes == {JPEGLSLossless}
