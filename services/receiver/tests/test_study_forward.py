"""A PACS forwards whole studies: every object is answered Success, only the CT series is kept.

Orthanc 1.10 (the PACS) forwards a study holding a CT series, a scout, a dose screen, a dose
report, a key object note, an SR and a SEG through ``POST /modalities/{id}/store``; dcmtk's
storescu and pynetdicom send the same objects (``non_ct_objects=reject``, the old
behaviour, is proven in test_receiver.py and test_query_retrieve.py).
"""

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from pydicom.uid import MRImageStorage, SecondaryCaptureImageStorage
from pynetdicom import AE, build_role
from sqlalchemy import func, select
from structlog.testing import capture_logs

from pulmogate.common.db.models import Instance, Series
from services.receiver.tests.helpers import AE_TITLE, ReceiverFactory, run_tool
from services.receiver.tests.study_objects import OTHER_OBJECTS, large_page, write_study
from tests.fixtures.orthanc import run_orthanc


def _storescu(port: int, *paths: Path) -> list[str]:
    """storescu proposing only what the files need (-R), as a PACS does."""
    return [
        "/usr/bin/storescu",
        "-R",
        "-aet",
        "PACS",
        "-aec",
        AE_TITLE,
        "127.0.0.1",
        str(port),
        *map(str, paths),
    ]


async def _held(rx: object, study_uid: str) -> tuple[list[str], int]:
    """The series UIDs the receiver holds of the study, and their instance count."""
    async with rx.ctx.db.session() as session:  # type: ignore[attr-defined]
        of_study = Series.study_uid == study_uid
        series = list(await session.scalars(select(Series.series_uid).where(of_study)))
        instances = await session.scalar(
            select(func.count()).select_from(Instance).join(Series).where(of_study)
        )
    return series, int(instances or 0)


def _forward(orthanc_url: str, paths: list[Path]) -> tuple[int, str, int]:
    """Upload ``paths`` into Orthanc, then have it forward the whole study to PulmoGate."""
    import httpx

    with httpx.Client(base_url=orthanc_url, timeout=60) as pacs:
        for path in paths:
            assert pacs.post("/instances", content=path.read_bytes()).status_code == 200
        (study,) = pacs.get("/studies").json()
        held = len(pacs.get(f"/studies/{study}/instances").json())
        moved = pacs.post(
            "/modalities/pulmogate/store", json={"Resources": [study], "Synchronous": True}
        )
        return moved.status_code, moved.text, held


async def test_orthanc_forwards_a_whole_study_and_only_the_ct_series_is_kept(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    study_uid, series_uid, paths = write_study(tmp_path / "study")
    async with receiver_on() as rx:
        modalities: dict[str, list[object]] = {"pulmogate": [AE_TITLE, "127.0.0.1", rx.port]}
        (tmp_path / "orthanc").mkdir()
        with run_orthanc(tmp_path / "orthanc", modalities) as orthanc, capture_logs() as logs:
            status, text, held = await asyncio.to_thread(_forward, orthanc.url, paths)
            await rx.wait_arrivals(series_uid)
            await asyncio.sleep(1.0)  # another series would have completed by now
        series, instances = await _held(rx, study_uid)
    assert held == len(paths) == 6 + 1 + len(OTHER_OBJECTS)
    assert status == 200, text
    assert series == [series_uid]
    assert instances == 6
    assert [e.series_uid for e in rx.arrived] == [series_uid]
    lines = [entry for entry in logs if entry.get("discarded")]  # one per association
    assert {line["log_level"] for line in lines} == {"info"}
    kinds: Counter[str] = Counter()
    for line in lines:
        kinds.update(line["kinds"])
    assert kinds == {
        "CTImageStorage (localizer)": 1,
        "Comprehensive3DSRStorage": 1,
        "KeyObjectSelectionDocumentStorage": 1,
        "SecondaryCaptureImageStorage": 1,
        "SegmentationStorage": 1,
        "XRayRadiationDoseSRStorage": 1,
    }
    assert sum(line["discarded"] for line in lines) == 1 + len(OTHER_OBJECTS)
    assert "TEST^RECEIVER" not in str(logs) and "PG-TEST-1" not in str(logs)


async def test_storescu_sends_every_object_and_gets_success_for_each(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    study_uid, series_uid, paths = write_study(tmp_path / "study", ct_slices=3)
    async with receiver_on() as rx:
        sent = await run_tool(*_storescu(rx.port, *paths))
        await rx.wait_arrivals(series_uid)
        series, instances = await _held(rx, study_uid)
        files = [p for p in rx.ctx.storage.root.rglob("*") if p.is_file() and study_uid in str(p)]
    assert sent.returncode == 0, sent.stderr
    assert "Failed" not in sent.stderr and "error" not in sent.stderr.lower(), sent.stderr
    assert series == [series_uid] and instances == 3
    assert len(files) == 3  # nothing of the discarded objects was written


async def test_a_forwarded_page_larger_than_1_mib_gets_success_as_a_ct_slice_would(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    """PulmoGate's own summary page (1024 x 768 RGB, 2.4 MB) forwarded back with the study:
    bounded by DICOM_MAX_INSTANCE_MB like CT, not by the 1 MiB of small messages."""
    page = large_page(tmp_path / "page.dcm")
    assert page.stat().st_size > 2 * (1 << 20)
    async with receiver_on() as rx:
        sent = await run_tool(*_storescu(rx.port, page))
        files = [p for p in rx.ctx.storage.root.rglob("*") if p.is_file()]
    assert sent.returncode == 0, sent.stderr
    assert "Failed" not in sent.stderr and "error" not in sent.stderr.lower(), sent.stderr
    assert files == []  # answered Success, discarded


async def test_by_default_every_storage_class_is_accepted_in_both_roles(
    receiver_on: ReceiverFactory,
) -> None:
    def accepted(port: int, with_role: bool) -> set[str]:
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(MRImageStorage)
        ae.add_requested_context(SecondaryCaptureImageStorage)
        roles: list[Any] = (
            [build_role(SecondaryCaptureImageStorage, scp_role=True)] if with_role else []
        )
        assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE, ext_neg=roles)
        try:
            return {str(c.abstract_syntax) for c in assoc.accepted_contexts}
        finally:
            assoc.release()

    async with receiver_on() as rx:
        plain = await asyncio.to_thread(accepted, rx.port, False)
        for_get = await asyncio.to_thread(accepted, rx.port, True)
    assert plain == for_get == {MRImageStorage, SecondaryCaptureImageStorage}
