"""Source policy (accept_from) and the disk watermark, against dcmtk's storescu/echoscu."""

import asyncio
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]
from sqlalchemy import func, select

from pulmogate.common.db.models import Instance, RoutingRule
from pulmogate.common.dicom.statuses import STATUS_OUT_OF_RESOURCES
from pulmogate.receiver.policy import SourcePattern, brings_images, refusal
from services.receiver.tests.helpers import (
    AE_TITLE,
    ReceiverFactory,
    RunningReceiver,
    run_tool,
    write_slices,
)


async def _stored(rx: RunningReceiver, paths: list[Path]) -> int:
    """How many of ``paths`` the receiver recorded."""
    uids = [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]
    await rx.recorded()
    async with rx.ctx.db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(Instance).where(Instance.sop_instance_uid.in_(uids))
        )
    return int(count or 0)


def _storescu(port: int, calling: str, *paths: Path) -> list[str]:
    return ["/usr/bin/storescu", "-aet", calling, "-aec", AE_TITLE, "127.0.0.1", str(port)] + [
        str(p) for p in paths
    ]


def _echoscu(port: int, calling: str) -> list[str]:
    return ["/usr/bin/echoscu", "-aet", calling, "-aec", AE_TITLE, "127.0.0.1", str(port)]


def test_a_rule_with_neither_ae_nor_ip_accepts_every_sender_and_a_cidr_covers_its_hosts() -> None:
    ct1 = SourcePattern("ct1", "10.0.0.0/24", "CT1")
    assert refusal([ct1], "CT1", "10.0.0.9") is None
    assert refusal([ct1], "CT1", "10.0.1.9") is not None
    assert refusal([ct1], "CT2", "10.0.0.9") is not None
    assert refusal([ct1, SourcePattern("all", None, None)], "ANY", "192.0.2.1") is None
    assert "no enabled routing rule" in (refusal([], "CT1", "10.0.0.9") or "")


def test_echo_and_query_retrieve_associations_bring_no_images() -> None:
    assert not brings_images(["1.2.840.10008.1.1"])
    assert not brings_images(["1.2.840.10008.5.1.4.1.2.2.3", "1.2.840.10008.5.1.4.1.1.2"])
    assert brings_images(["1.2.840.10008.1.1", "1.2.840.10008.5.1.4.1.1.2"])


async def test_under_rules_an_unnamed_sender_is_rejected_at_association_and_a_named_one_stores(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    paths = write_slices(tmp_path / "in", 2)
    async with receiver_on(accept_from="rules") as rx:
        async with rx.ctx.db.session() as session:
            session.add(RoutingRule(name="ct1", source_ae_title="CT1", source_ip="127.0.0.0/8"))
            session.add(RoutingRule(name="off", source_ae_title="OFF", enabled=False))

        stranger = await run_tool(*_storescu(rx.port, "STRANGER", *paths))
        disabled = await run_tool(*_storescu(rx.port, "OFF", *paths))
        echo = await run_tool(*_echoscu(rx.port, "STRANGER"))
        named_echo = await run_tool(*_echoscu(rx.port, "CT1"))
        stored_before = await _stored(rx, paths)
        named = await run_tool(*_storescu(rx.port, "CT1", *paths))
        stored_after = await _stored(rx, paths)

    assert stranger.returncode != 0 and disabled.returncode != 0
    assert "Association Rejected" in stranger.stderr, stranger.stderr
    assert "Calling AE Title Not Recognized" in stranger.stderr
    assert echo.returncode != 0 and "Calling AE Title Not Recognized" in echo.stderr, echo.stderr
    assert named_echo.returncode == 0, named_echo.stderr
    assert stored_before == 0
    assert named.returncode == 0, named.stderr
    assert stored_after == 2


async def test_echo_from_an_unnamed_peer_is_accepted_only_when_configured(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    paths = write_slices(tmp_path / "in", 1)
    async with receiver_on(accept_from="rules", accept_echo_from_unknown=True) as rx:
        async with rx.ctx.db.session() as session:
            session.add(RoutingRule(name="echo-ct2", source_ae_title="CT2"))
        echo = await run_tool(*_echoscu(rx.port, "STRANGER"))
        store = await run_tool(*_storescu(rx.port, "STRANGER", *paths))
        stored = await _stored(rx, paths)
    assert echo.returncode == 0, echo.stderr
    assert store.returncode != 0 and "Calling AE Title Not Recognized" in store.stderr
    assert stored == 0


async def test_under_any_an_unnamed_sender_stores(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    paths = write_slices(tmp_path / "in", 1)
    async with receiver_on(accept_from="any") as rx:
        done = await run_tool(*_storescu(rx.port, "STRANGER", *paths))

    assert done.returncode == 0, done.stderr


async def test_above_the_disk_watermark_c_store_answers_out_of_resources(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    paths = write_slices(tmp_path / "in", 1)
    # A real volume is always more than 0 % used: the watermark is exceeded without a fake.
    async with receiver_on(accept_from="any", disk_max_used_percent=0.0) as rx:
        statuses = await asyncio.to_thread(_send, rx.port, paths[0])
        async with rx.ctx.db.session() as session:
            stored = await session.scalar(
                select(func.count())
                .select_from(Instance)
                .where(Instance.sop_instance_uid == str(dcmread(paths[0]).SOPInstanceUID))
            )

    assert statuses == (STATUS_OUT_OF_RESOURCES, "storage")
    assert stored == 0


def _send(port: int, path: Path) -> tuple[int, str]:
    """One C-STORE with pynetdicom; its status and the first word of its ErrorComment."""
    ae = AE(ae_title="CT1")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(dcmread(path))
        return int(status.Status), str(status.get("ErrorComment", "")).split()[0]
    finally:
        assoc.release()
