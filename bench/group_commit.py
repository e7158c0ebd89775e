"""CPU of the receiver's group commit (``record_group``) by group size, on Postgres and SQLite.

Each group records ``size`` instances of one series (a new series, then a second group that
updates it), as the receiver's recorder does every ``RECEIVER_GROUP_INTERVAL_S``. Prints the
median process CPU and wall time per group and the CPU per instance: the fixed cost of a
group against the cost of each instance in it. Asserts nothing.

    .venv/bin/python bench/group_commit.py --sizes 1,10,50,200 --groups 20
"""

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime

from pulmogate.common.db.migrate import upgrade_async
from pulmogate.common.db.session import Database
from pulmogate.common.dicom.intake.rows import Peer, StoredInstance
from pulmogate.common.dicom.intake.values import InstanceValues
from pulmogate.receiver.records import record_group

PEER = Peer("MODALITY", "PULMOGATE", "127.0.0.1")


def _item(series: str, index: int) -> InstanceValues:
    return InstanceValues(
        study_uid=series.rsplit(".", 1)[0],
        series_uid=series,
        sop_instance_uid=f"{series}.{index + 1}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        path=f"/bench/{series}/{index}.dcm",
        size_bytes=525_000,
        modality="CT",
        study_description="CT CHEST",
        series_description="Axial 1.25",
        instance_number=index + 1,
        rows=512,
        columns=512,
        pixel_spacing="0.7\\0.7",
        slice_thickness=1.25,
    )


async def _measure(url: str, sizes: list[int], groups: int) -> None:
    await upgrade_async(url)
    db = Database(url)
    try:
        for size in sizes:
            cpu: list[float] = []
            wall: list[float] = []
            for _ in range(groups):
                series = f"2.25.{uuid.uuid4().int % 10**30}.1"
                for round_no in range(2):  # creates the series, then updates it
                    first = round_no * size
                    entries = [
                        StoredInstance(
                            _item(series, first + k), PEER, first + k == 0, datetime.now(UTC)
                        )
                        for k in range(size)
                    ]
                    started_cpu, started = time.process_time(), time.perf_counter()
                    await record_group(db, entries)
                    cpu.append((time.process_time() - started_cpu) * 1000)
                    wall.append((time.perf_counter() - started) * 1000)
            per_group = statistics.median(cpu)
            print(
                f"{url.split('+')[0]:<10} group of {size:>4}: CPU {per_group:6.2f} ms, "
                f"wall {statistics.median(wall):6.2f} ms, CPU per instance "
                f"{per_group / size:.3f} ms",
                flush=True,
            )
    finally:
        await db.dispose()


def _psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)


def main() -> None:
    """Measure on a fresh Postgres database and a fresh SQLite file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,10,50,200")
    parser.add_argument("--groups", type=int, default=20)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    name = f"bench_group_{uuid.uuid4().hex[:8]}"
    _psql(f"CREATE DATABASE {name}")
    try:
        asyncio.run(
            _measure(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", sizes, args.groups)
        )
    finally:
        _psql(f"DROP DATABASE {name} WITH (FORCE)")
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_measure(f"sqlite+aiosqlite:///{folder}/pulmogate.db", sizes, args.groups))


if __name__ == "__main__":
    main()
