"""C-FIND latency of the receiver's Query/Retrieve SCP over many stored studies.

Bulk-inserts rows for ``--studies`` studies straight into a fresh database (one CT series
per study with ``--instances`` instance rows, a finished job with 8 result objects in
4 series; 2 % of the jobs purged), starts the receiver, and times C-FIND requests from a
pynetdicom SCU, request to final response. Prints figures; asserts nothing.

    .venv/bin/python bench/query.py --studies 10000            # Postgres (127.0.0.1)
    .venv/bin/python bench/query.py --studies 10000 --sqlite   # embedded default
"""

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom import Dataset
from pynetdicom import AE
from sqlalchemy import insert

from pulmogate.common.db.models import Instance, Job, OutputObject, Series
from pulmogate.common.logging import configure_logging
from pulmogate.common.runtime import close_context, open_context
from pulmogate.common.settings import Settings
from pulmogate.receiver.service import ReceiverService

STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
PATIENT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
ROOT = "1.2.826.0.1.3680043.10.1234"
OUTPUTS = [("overlay", "OT", 9000, 5), ("summary", "OT", 9001, 1), ("sr", "SR", 9002, 1)]
OUTPUTS.append(("seg", "SEG", 9003, 1))


def study_uid(k: int) -> str:
    return f"{ROOT}.1.{k}"


def series_uid(k: int) -> str:
    return f"{ROOT}.2.{k}"


async def fill(settings: Settings, studies: int, instances: int) -> None:
    """Insert the rows in batches (ids assigned here so no RETURNING round trips)."""
    ctx = await open_context(settings, migrate=True)
    now = datetime.now(UTC)
    batch = 1000
    instance_id = output_id = 0
    try:
        for start in range(0, studies, batch):
            ks = range(start, min(start + batch, studies))
            series_rows: list[dict[str, Any]] = []
            instance_rows: list[dict[str, Any]] = []
            job_rows: list[dict[str, Any]] = []
            output_rows: list[dict[str, Any]] = []
            for k in ks:
                sid = k + 1
                series_rows.append(
                    {
                        "id": sid,
                        "series_uid": series_uid(k),
                        "study_uid": study_uid(k),
                        "patient_name": f"PHANTOM^P{k:05d}",
                        "patient_id": f"PG{k:06d}",
                        "patient_birth_date": "19700101",
                        "patient_sex": "O",
                        "study_date": f"2026{1 + k % 12:02d}{1 + k % 28:02d}",
                        "study_time": f"{8 + k % 10:02d}{k % 60:02d}00",
                        "study_id": str(k % 1000),
                        "accession_number": f"ACC{k:07d}",
                        "study_description": "CT CHEST" if k % 3 else "CT CHEST LOW DOSE",
                        "series_description": "Axial 1.25",
                        "series_number": 3,
                        "modality": "CT",
                        "status": "routed",
                        "instance_count": instances,
                        "open_associations": 0,
                        "first_received_at": now,
                        "last_received_at": now,
                    }
                )
                for n in range(instances):
                    instance_id += 1
                    instance_rows.append(
                        {
                            "id": instance_id,
                            "series_id": sid,
                            "sop_instance_uid": f"{ROOT}.3.{k}.{n}",
                            "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
                            "transfer_syntax_uid": "1.2.840.10008.1.2.1",
                            "path": f"/nonexistent/{k}/{n}.dcm",
                            "size_bytes": 0,
                            "instance_number": n + 1,
                            "pixel_spacing": "",
                            "modality": "CT",
                            "received_at": now,
                        }
                    )
                job_rows.append(
                    {
                        "id": sid,
                        "series_id": sid,
                        "status": "done",
                        "figures": {},
                        "timings": {},
                        "attempts": 1,
                        "created_at": now,
                        "updated_at": now,
                        "purged_at": now if k % 50 == 0 else None,
                    }
                )
                for kind, modality, number, count in OUTPUTS:
                    for n in range(count):
                        output_id += 1
                        output_rows.append(
                            {
                                "id": output_id,
                                "job_id": sid,
                                "kind": kind,
                                "sop_instance_uid": f"{ROOT}.4.{k}.{number}.{n}",
                                "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7",
                                "series_uid": f"{ROOT}.5.{k}.{number}",
                                "path": f"/nonexistent/r/{k}/{n}.dcm",
                                "modality": modality,
                                "series_number": number,
                                "series_description": f"PulmoGate {kind} (qct 1.0)",
                                "instance_number": n + 1,
                            }
                        )
            async with ctx.db.session() as session:
                await session.execute(insert(Series), series_rows)
                await session.execute(insert(Instance), instance_rows)
                await session.execute(insert(Job), job_rows)
                await session.execute(insert(OutputObject), output_rows)
        if ctx.db.url.startswith("postgresql"):
            async with ctx.db.session() as session:
                from sqlalchemy import text

                await session.execute(text("ANALYZE"))
    finally:
        await close_context(ctx)


def identifier(level: str, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def queries(studies: int) -> list[tuple[str, str, Dataset]]:
    k = studies // 2 + 1
    study_keys = {
        "StudyInstanceUID": "",
        "PatientName": "",
        "StudyDate": "",
        "StudyDescription": "",
        "ModalitiesInStudy": "",
        "NumberOfStudyRelatedSeries": "",
        "NumberOfStudyRelatedInstances": "",
    }
    return [
        ("STUDY by PatientID", STUDY_FIND, identifier("STUDY", **study_keys | {"PatientID": f"PG{k:06d}"})),
        ("STUDY by AccessionNumber", STUDY_FIND, identifier("STUDY", **study_keys | {"AccessionNumber": f"ACC{k:07d}"})),
        ("STUDY by StudyInstanceUID", STUDY_FIND, identifier("STUDY", **study_keys | {"StudyInstanceUID": study_uid(k)})),
        ("STUDY PatientName=PHANTOM^P0012*", STUDY_FIND, identifier("STUDY", **study_keys | {"PatientName": "PHANTOM^P0012*"})),
        ("STUDY StudyDate one day", STUDY_FIND, identifier("STUDY", **study_keys | {"StudyDate": "20260303-20260303"})),
        ("STUDY ModalitiesInStudy=SEG, one day", STUDY_FIND, identifier("STUDY", **study_keys | {"StudyDate": "20260303", "ModalitiesInStudy": "SEG"})),
        ("SERIES of one study", STUDY_FIND, identifier("SERIES", StudyInstanceUID=study_uid(k), SeriesInstanceUID="", Modality="", SeriesNumber="", SeriesDescription="", NumberOfSeriesRelatedInstances="")),
        ("IMAGE of one series", STUDY_FIND, identifier("IMAGE", StudyInstanceUID=study_uid(k), SeriesInstanceUID=series_uid(k), SOPInstanceUID="", InstanceNumber="", SOPClassUID="")),
        ("PATIENT by PatientID", PATIENT_FIND, identifier("PATIENT", PatientID=f"PG{k:06d}", PatientName="", NumberOfPatientRelatedStudies="")),
        ("STUDY universal (all studies)", STUDY_FIND, identifier("STUDY", **study_keys)),
    ]  # fmt: skip


def time_find(port: int, sop_class: str, ds: Dataset) -> tuple[float, int]:
    """Seconds from request to the final response, and the number of matches."""
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(sop_class)
    assoc = ae.associate("127.0.0.1", port, ae_title="PULMOGATE")
    assert assoc.is_established, "association refused"
    sock = assoc.dul.socket.socket if assoc.dul.socket else None
    if sock is not None:  # no Nagle delay between the command and dataset PDVs
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        t0 = time.perf_counter()
        matches = 0
        for status, found in assoc.send_c_find(ds, sop_class):
            if status and status.Status in (0xFF00, 0xFF01) and found is not None:
                matches += 1
        return time.perf_counter() - t0, matches
    finally:
        assoc.release()


async def run(settings: Settings, repeat: int, studies: int, out: Callable[[str], None]) -> None:
    ctx = await open_context(settings, migrate=False)
    service = ReceiverService()
    await service.start(ctx)
    try:
        out(f"{'query':40s} {'matches':>8s} {'median ms':>10s} {'p95 ms':>8s}")
        for name, sop_class, ds in queries(studies):
            runs = 3 if "universal" in name else repeat
            samples = []
            matches = 0
            for _ in range(runs):
                seconds, matches = await asyncio.to_thread(time_find, service.port, sop_class, ds)
                samples.append(seconds * 1000)
            samples.sort()
            p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
            out(f"{name:40s} {matches:8d} {statistics.median(samples):10.1f} {p95:8.1f}")
    finally:
        await service.stop()
        await close_context(ctx)


def main() -> None:
    """Fill a database, start the receiver, print C-FIND latencies."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--instances", type=int, default=20, help="instance rows per CT series")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of Postgres")
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        name = ""
        if args.sqlite:
            url = ""
        else:
            name = f"pg_bench_q_{uuid.uuid4().hex[:8]}"
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f'CREATE DATABASE "{name}"'],
                check=True,
                capture_output=True,
            )
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        settings = Settings(
            data_dir=tmp / "data",
            database_url=url,
            broker_url="memory://",
            dicom_host="127.0.0.1",
            dicom_port=0,
            accept_from="any",
            log_level="WARNING",
        )
        try:
            t0 = time.perf_counter()
            asyncio.run(fill(settings, args.studies, args.instances))
            backend = "SQLite" if args.sqlite else "Postgres"
            print(
                f"{backend}: {args.studies} studies, {args.studies * args.instances} CT instance "
                f"rows, {args.studies * 8} result rows inserted in {time.perf_counter() - t0:.1f} s"
            )
            asyncio.run(run(settings, args.repeat, args.studies, print))
        finally:
            if name:
                subprocess.run(
                    ["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f'DROP DATABASE "{name}"'],
                    check=False,
                    capture_output=True,
                )


if __name__ == "__main__":
    main()
