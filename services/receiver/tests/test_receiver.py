"""The receiver against real DICOM peers (dcmtk, pynetdicom) with a real database."""

import asyncio
import errno
import subprocess
import uuid
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import JPEG2000Lossless, MRImageStorage, SecondaryCaptureImageStorage, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]
from sqlalchemy import select

from pulmogate.common.db.models import Series, SeriesStatus
from pulmogate.common.dicom.statuses import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_OUT_OF_RESOURCES,
    STATUS_SUCCESS,
)
from pulmogate.receiver import scp
from pulmogate.tools.phantom import make_phantom, write_series
from services.receiver.tests.helpers import (
    AE_TITLE,
    ReceiverFactory,
    ct_slice,
    run_tool,
    write_slices,
)

J2K_SERIES = Path("/work/shared/data/abdomen_ct_j2k")


def open_association(port: int, *sop_classes: str, called: str = AE_TITLE):
    """A pynetdicom SCU association (call from a thread: the receiver needs the loop)."""
    ae = AE(ae_title="TESTSCU")
    for sop_class in sop_classes or (CTImageStorage,):
        ae.add_requested_context(sop_class)
    return ae.associate("127.0.0.1", port, ae_title=called)


def send(port: int, *items: object) -> list[int]:
    """Send datasets or files over one association; the status of each."""
    assoc = open_association(port)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(item).Status) for item in items]
    finally:
        assoc.release()


def storescu(port: int, *paths: Path, called: str = AE_TITLE, propose: str = "") -> list[str]:
    """A dcmtk storescu command line; ``propose`` picks a transfer syntax option such as -xv."""
    return [
        "/usr/bin/storescu",
        *([propose] if propose else []),
        "-aet",
        "MODALITY1",
        "-aec",
        called,
        "127.0.0.1",
        str(port),
        *map(str, paths),
    ]


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
async def test_ct_series_from_storescu_is_stored_and_announced_once(
    receiver_on: ReceiverFactory, tmp_path: Path, backend: str
) -> None:
    phantom = make_phantom(slices=6, size=64)
    seed = uuid.uuid4().int % 10_000
    paths = write_series(phantom, tmp_path / "in", seed=seed)
    series_uid = str(dcmread(paths[0]).SeriesInstanceUID)
    async with receiver_on(sqlite=backend == "sqlite") as rx:
        done = await run_tool(*storescu(rx.port, *paths))
        assert done.returncode == 0, done.stderr
        await rx.wait_arrivals(series_uid)
        await asyncio.sleep(1.0)  # room for a wrong second announcement
        series = await rx.series(series_uid)
        instances = await rx.instances(series_uid)

    assert series is not None
    assert series.status == SeriesStatus.COMPLETE
    assert series.instance_count == 6 and series.open_associations == 0
    assert (series.calling_ae, series.called_ae, series.peer_ip) == (
        "MODALITY1",
        AE_TITLE,
        "127.0.0.1",
    )
    assert series.patient_id == "PG-PHANTOM-0001" and series.modality == "CT"
    assert series.completed_at is not None
    assert (series.completed_at - series.last_received_at).total_seconds() >= 0.5
    assert len(instances) == 6
    for instance in instances:
        stored = dcmread(instance.path)
        assert stored.SOPInstanceUID == instance.sop_instance_uid
        assert stored.Rows == 64
    [event] = rx.arrivals(series_uid)
    assert event.instance_count == 6 and event.calling_ae == "MODALITY1"
    assert event.peer_ip == "127.0.0.1" and event.series_id == series.id
    assert event.series_description == "Chest CT phantom" and event.modality == "CT"


async def test_echo_succeeds_and_wrong_called_ae_is_rejected(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    from structlog.testing import capture_logs

    async with receiver_on() as rx:
        ok = await run_tool("/usr/bin/echoscu", "-aec", AE_TITLE, "127.0.0.1", str(rx.port))
        with capture_logs() as logs:
            wrong = await run_tool("/usr/bin/echoscu", "-aec", "NOTUS", "127.0.0.1", str(rx.port))
        refused = await run_tool(*storescu(rx.port, *write_slices(tmp_path, 1), called="NOTUS"))
    assert ok.returncode == 0, ok.stderr
    assert wrong.returncode != 0
    assert "Rejected" in wrong.stderr or "rejected" in wrong.stderr.lower()
    assert refused.returncode != 0
    assert any("NOTUS" in str(entry.get("reason", "")) for entry in logs), logs


async def test_under_reject_non_ct_sop_classes_are_refused_at_negotiation(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    mr = write_slices(tmp_path / "mr", 1, sop_class=MRImageStorage, modality="MR")
    async with receiver_on(non_ct_objects="reject") as rx:
        assoc = await asyncio.to_thread(
            open_association, rx.port, CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage
        )
        try:
            assert assoc.is_established
            assert [c.abstract_syntax for c in assoc.accepted_contexts] == [CTImageStorage]
            refused = {c.abstract_syntax for c in assoc.rejected_contexts}
            assert refused == {MRImageStorage, SecondaryCaptureImageStorage}
        finally:
            await asyncio.to_thread(assoc.release)
        dcmtk = await run_tool(*storescu(rx.port, *mr))
        assert dcmtk.returncode != 0
        assert not rx.incoming.exists() or not any(rx.incoming.rglob("*.dcm"))


async def test_undecodable_or_incomplete_datasets_get_cannot_understand(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.dcm"
    sop_uid = generate_uid()
    good = ct_slice(generate_uid(), generate_uid(), 0, sop_uid=sop_uid)
    with garbage.open("wb") as fh:
        fh.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(fh, good.file_meta)  # type: ignore[arg-type]  # any binary file
        for tag, value in ((b"\x08\x00\x16\x00", CTImageStorage), (b"\x08\x00\x18\x00", sop_uid)):
            raw = value.encode() + b"\0" * (len(value) % 2)
            fh.write(tag + b"UI" + len(raw).to_bytes(2, "little") + raw)
        fh.write(b"\x08\x00\x60\x00CS\xf0\xff" + b"\xa5" * 16)  # runs past the end
    no_series = ct_slice(generate_uid(), generate_uid(), 1)
    del no_series.SeriesInstanceUID
    path_like = ct_slice("1.2.3", "../../../../etc", 2)
    async with receiver_on() as rx:
        statuses = await asyncio.to_thread(send, rx.port, garbage, no_series, path_like)
        assert not rx.incoming.exists() or not any(rx.incoming.rglob("*.dcm"))
    assert statuses == [STATUS_CANNOT_UNDERSTAND] * 3


async def test_the_same_instance_sent_twice_is_stored_once(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    [path] = write_slices(tmp_path, 1)
    series_uid = str(dcmread(path).SeriesInstanceUID)
    async with receiver_on() as rx:
        first = await run_tool(*storescu(rx.port, path))
        second = await run_tool(*storescu(rx.port, path))
        assert first.returncode == 0 and second.returncode == 0
        await rx.wait_arrivals(series_uid)
        instances = await rx.instances(series_uid)
        series = await rx.series(series_uid)
        files = list(rx.incoming.rglob("*.dcm"))
    assert len(instances) == 1 and len(files) == 1
    assert series is not None and series.instance_count == 1


async def test_jpeg2000_series_is_stored_as_received(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    samples = sorted(J2K_SERIES.glob("CT.*"))
    assert samples, f"test data missing in {J2K_SERIES}"
    # The anonymised sample has empty study, series and SOP UIDs (only the file meta names the
    # instance): fill them in. The compressed pixel data is copied untouched.
    study_uid, series_uid = generate_uid(), generate_uid()
    sources = []
    for sample in samples:
        ds = dcmread(sample)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.save_as(tmp_path / sample.name, enforce_file_format=True)
        sources.append(tmp_path / sample.name)
    originals = {str(ds.SOPInstanceUID): ds for ds in map(dcmread, sources)}
    async with receiver_on() as rx:
        done = await run_tool(*storescu(rx.port, *sources, propose="-xv"))
        assert done.returncode == 0, done.stderr
        await rx.wait_arrivals(series_uid)
        instances = await rx.instances(series_uid)
    assert len(instances) == len(sources)
    for instance in instances:
        stored = dcmread(instance.path)
        assert stored.file_meta.TransferSyntaxUID == JPEG2000Lossless
        assert instance.transfer_syntax_uid == JPEG2000Lossless
        assert stored.PixelData == originals[instance.sop_instance_uid].PixelData


async def test_full_disk_answers_out_of_resources(
    receiver_on: ReceiverFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC for real: the storage folder is a 200 KiB tmpfs and a slice is 512 KiB.

    Where mounting is not allowed (not root), ``atomic_write`` is made to raise
    OSError(ENOSPC) instead, which is the same error the kernel gives.
    """
    storage = tmp_path / "data" / "storage"
    storage.mkdir(parents=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(storage)],
            capture_output=True,
        ).returncode
        == 0
    )
    if not mounted:

        def disk_full(path: Path, data: bytes) -> None:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        monkeypatch.setattr(scp, "atomic_write", disk_full)
    big = ct_slice(generate_uid(), generate_uid(), 0, size=512)
    try:
        async with receiver_on() as rx:
            statuses = await asyncio.to_thread(send, rx.port, big)
            assert await rx.series(str(big.SeriesInstanceUID)) is None
            assert not any(storage.rglob("*.dcm"))
    finally:
        if mounted:
            subprocess.run(["umount", str(storage)], check=False)
    assert statuses == [STATUS_OUT_OF_RESOURCES]


async def test_series_waits_for_open_association_then_completes_after_release(
    receiver_on: ReceiverFactory,
) -> None:
    study, series_uid = generate_uid(), generate_uid()
    async with receiver_on(series_idle_seconds=60) as rx:
        assoc = await asyncio.to_thread(open_association, rx.port)
        try:
            for k in range(3):
                status = await asyncio.to_thread(assoc.send_c_store, ct_slice(study, series_uid, k))
                assert int(status.Status) == STATUS_SUCCESS
            await asyncio.sleep(1.5)  # three times the quiet period
            series = await rx.series(series_uid)
            assert series is not None
            assert series.status == SeriesStatus.RECEIVING and series.open_associations == 1
        finally:
            await asyncio.to_thread(assoc.release)
        series = await rx.wait_status(series_uid, SeriesStatus.COMPLETE, timeout=5)
        await rx.wait_arrivals(series_uid)
    assert series.open_associations == 0 and series.instance_count == 3


async def test_series_completes_by_idle_timeout_with_association_still_open(
    receiver_on: ReceiverFactory,
) -> None:
    study, series_uid = generate_uid(), generate_uid()
    async with receiver_on(series_idle_seconds=1.5) as rx:
        assoc = await asyncio.to_thread(open_association, rx.port)
        try:
            status = await asyncio.to_thread(assoc.send_c_store, ct_slice(study, series_uid, 0))
            assert int(status.Status) == STATUS_SUCCESS
            series = await rx.wait_status(series_uid, SeriesStatus.COMPLETE, timeout=6)
            await rx.wait_arrivals(series_uid)
            assert assoc.is_established
        finally:
            await asyncio.to_thread(assoc.release)
    assert series.open_associations == 1
    assert series.completed_at is not None
    assert (series.completed_at - series.last_received_at).total_seconds() >= 1.5


async def test_late_instance_reopens_the_series_and_announces_it_again(
    receiver_on: ReceiverFactory,
) -> None:
    study, series_uid = generate_uid(), generate_uid()
    async with receiver_on() as rx:
        await asyncio.to_thread(send, rx.port, ct_slice(study, series_uid, 0))
        await rx.wait_arrivals(series_uid)
        await asyncio.to_thread(send, rx.port, ct_slice(study, series_uid, 1))
        await rx.wait_arrivals(series_uid, count=2)
    assert [e.instance_count for e in rx.arrivals(series_uid)] == [1, 2]


async def test_restart_clears_associations_of_the_old_process(
    receiver_on: ReceiverFactory,
) -> None:
    """A series cut off by the old process's end is interrupted: announced only after the
    idle time without instances (the sender likely sends the rest), not the quiet period."""
    series_uid = generate_uid()
    async with receiver_on() as rx:
        await asyncio.to_thread(send, rx.port, ct_slice(generate_uid(), series_uid, 0))
        await rx.wait_arrivals(series_uid)
        async with rx.ctx.db.session() as session:
            series = await session.scalar(select(Series).where(Series.series_uid == series_uid))
            assert series is not None
            series.status = SeriesStatus.RECEIVING
            series.open_associations = 2  # as a crashed process would leave it
    async with receiver_on(series_idle_seconds=2.5) as restarted:
        await asyncio.sleep(1.5)  # three quiet periods
        waiting = await restarted.series(series_uid)
        series = await restarted.wait_status(series_uid, SeriesStatus.COMPLETE, timeout=5)
        await restarted.wait_arrivals(series_uid)
    assert waiting is not None and waiting.status == SeriesStatus.RECEIVING
    assert waiting.open_associations == 0 and waiting.interrupted_at is not None
    assert series.completed_at is not None and series.interrupted_at is not None
    assert (series.completed_at - series.interrupted_at).total_seconds() >= 2.5


async def test_values_that_break_their_vr_are_stored_and_indexed_without_them(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    """PostgreSQL text refuses NUL, and an unconvertible PixelSpacing or a missing Modality
    used to fail the row: every instance is stored (0x0000), the row is written, the file
    keeps the values as they came."""
    from tests.fixtures import quirks

    folder = tmp_path / "plain"
    quirks.phantom_series(folder, slices=4, size=32, seed=uuid.uuid4().int % 10_000)
    datasets = quirks.read(folder)
    quirks.set_values(datasets, {**quirks.BAD_PATIENT_VALUES, "PatientName": "DOE\x00^JANE"})
    for ds in datasets:
        quirks.set_raw(ds, "PixelSpacing", ["PHI", "0.7"])
        del ds.Modality
    paths = quirks.write(datasets, tmp_path / "bad")
    series_uid = str(datasets[0].SeriesInstanceUID)
    async with receiver_on() as rx:
        done = await run_tool(*storescu(rx.port, *paths))
        assert done.returncode == 0, done.stderr
        await rx.wait_arrivals(series_uid)
        series = await rx.series(series_uid)
        instances = await rx.instances(series_uid)
    assert series is not None and len(instances) == 4
    assert (series.patient_name, series.patient_id) == ("DOE^JANE", "PGID-7731")
    assert series.modality == "CT" and series.patient_birth_date == "PHIBDAY"
    assert "\x00" in str(dcmread(instances[0].path).PatientName)


async def test_an_interrupted_series_that_gets_more_completes_after_the_quiet_period(
    receiver_on: ReceiverFactory,
) -> None:
    study, series_uid = generate_uid(), generate_uid()
    async with receiver_on() as rx:
        await asyncio.to_thread(send, rx.port, ct_slice(study, series_uid, 0))
        await rx.wait_arrivals(series_uid)
        async with rx.ctx.db.session() as session:
            series = await session.scalar(select(Series).where(Series.series_uid == series_uid))
            assert series is not None
            series.status = SeriesStatus.RECEIVING
            series.open_associations = 1
    async with receiver_on(series_idle_seconds=60) as restarted:
        await asyncio.to_thread(send, restarted.port, ct_slice(study, series_uid, 1))
        await restarted.wait_arrivals(series_uid, timeout=5)
    assert [e.instance_count for e in restarted.arrivals(series_uid)] == [2]
