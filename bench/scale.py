"""Inference scaling: 1, then 2 `pulmogate inference` processes sharing the real RabbitMQ queue.

Run: .venv/bin/python bench/scale.py [--studies 12] [--slices 64] [--size 256] [--workers 1,2,2,1] [--no-pin]

Prepares a fresh Postgres database and RabbitMQ vhost, writes N small phantom chest CT studies
into storage and records them as queued jobs (what receiver + router leave behind). For each
worker count it starts that many `pulmogate inference` processes, warms each one up on one extra
study (a replica that KEDA keeps warm has loaded its code), then publishes `analysis.requested`
for the N measured jobs at once and waits until all are analysed; studies per minute run from
that publish to the last job recorded. Between runs the jobs are reset to `queued`.

Worker i is pinned to CPU i (sched_setaffinity), as a replica with its own core would run: the
analysis's onnxruntime sessions otherwise start one thread per core in every process, and two
unpinned workers on two cores fight over both (--no-pin measures that). "CPU s/study" is the
workers' user + system time during the measured phase divided by the studies. It checks that
no job was analysed twice (one "job analysed" line and one attempt per job, across all workers)
and prints how the jobs were shared (prefetch 1: a free worker takes the next study). Exits 1
when a job was lost or analysed twice; the speed-up is printed, not asserted.

PULMOGATE_BENCH_PG (admin DSN, default postgresql://postgres@127.0.0.1:5432/postgres) and
PULMOGATE_BENCH_AMQP (default amqp://guest:guest@127.0.0.1:5672) point it elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, func, select, update

from pulmogate.common.bus import make_bus
from pulmogate.common.db.migrate import upgrade
from pulmogate.common.db.models import (
    Instance,
    Job,
    JobLog,
    JobStatus,
    OutboxMessage,
    OutputObject,
    Series,
    SeriesStatus,
)
from pulmogate.common.db.session import Database
from pulmogate.common.events import AnalysisRequested
from pulmogate.common.uids import derive_uid
from pulmogate.tools.phantom import make_phantom, write_series

PG_ADMIN = os.environ.get("PULMOGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_BASE = os.environ.get("PULMOGATE_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672")
RABBITMQCTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
PULMOGATE = str(Path(sys.executable).with_name("pulmogate"))
FINISHED = {JobStatus.ANALYSED, JobStatus.FAILED, JobStatus.REJECTED}


@dataclass
class Run:
    """One measurement: how many workers, how long, who analysed what."""

    workers: int
    seconds: float
    cpu_seconds: float
    per_worker: list[list[int]]
    statuses: Counter[str]
    attempts: Counter[int]
    started_logs: Counter[int]
    stage_seconds: dict[str, float]

    @property
    def studies_per_minute(self) -> float:
        return sum(self.statuses.values()) / self.seconds * 60


def _spin(cpu: int, loops: int) -> None:
    os.sched_setaffinity(0, {cpu})
    total = 0
    for i in range(loops):
        total += i * i


def _machine_capacity(workers: int, loops: int = 15_000_000) -> float:
    """How much faster ``workers`` pinned busy loops finish than one, right now (ideal: workers).

    Tells the CPU this machine really gives when its cores are shared with other work (or are
    hyperthreads of fewer physical cores): the ceiling for the inference speed-up.
    """
    cpus = sorted(os.sched_getaffinity(0))

    def elapsed(count: int) -> float:
        procs = [
            multiprocessing.Process(target=_spin, args=(cpus[i % len(cpus)], loops))
            for i in range(count)
        ]
        started = time.perf_counter()
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        return time.perf_counter() - started

    return workers * elapsed(1) / elapsed(workers)


def _psql(sql: str) -> None:
    subprocess.run(["psql", PG_ADMIN, "-qc", sql], check=True, capture_output=True)


def _write_studies(folder: Path, studies: int, slices: int, size: int) -> list[list[Path]]:
    """N phantom studies (one series each), alternating involvement, distinct UIDs."""
    phantoms = [
        make_phantom(slices=slices, size=size, involvement=inv, seed=i)
        for i, inv in enumerate((0.1, 0.35))
    ]
    series = []
    for i in range(studies):
        study_uid = derive_uid("bench-scale-study", str(i))
        series.append(
            write_series(
                phantoms[i % 2],
                folder / f"study{i:03d}",
                patient_name=f"PHANTOM^SCALE{i:03d}",
                patient_id=f"PG-SCALE-{i:03d}",
                study_uid=study_uid,
                series_uid=derive_uid("bench-scale-series", study_uid),
                seed=i,
            )
        )
    return series


async def _record_jobs(db: Database, series_files: list[list[Path]]) -> list[int]:
    """Series, instances and queued jobs as the receiver and router would record them."""
    from pydicom import dcmread

    job_ids = []
    async with db.session() as session:
        for files in series_files:
            first = dcmread(files[0], stop_before_pixels=True)
            series = Series(
                series_uid=str(first.SeriesInstanceUID),
                study_uid=str(first.StudyInstanceUID),
                modality="CT",
                series_description=str(first.SeriesDescription),
                status=SeriesStatus.ROUTED,
                instance_count=len(files),
            )
            session.add(series)
            await session.flush()
            for path in files:
                ds = dcmread(path, stop_before_pixels=True)
                session.add(
                    Instance(
                        series_id=series.id,
                        sop_instance_uid=str(ds.SOPInstanceUID),
                        sop_class_uid=str(ds.SOPClassUID),
                        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
                        path=str(path),
                        size_bytes=path.stat().st_size,
                        instance_number=int(ds.InstanceNumber),
                        rows=int(ds.Rows),
                        columns=int(ds.Columns),
                        slice_thickness=float(ds.SliceThickness),
                        modality="CT",
                    )
                )
            job = Job(series_id=series.id, status=JobStatus.QUEUED)
            session.add(job)
            await session.flush()
            job_ids.append(job.id)
    return job_ids


async def _reset_jobs(db: Database, job_ids: list[int]) -> None:
    """Back to queued, as if the router had just created them."""
    async with db.session() as session:
        await session.execute(delete(OutputObject).where(OutputObject.job_id.in_(job_ids)))
        await session.execute(delete(JobLog).where(JobLog.job_id.in_(job_ids)))
        await session.execute(delete(OutboxMessage))
        await session.execute(
            update(Job)
            .where(Job.id.in_(job_ids))
            .values(
                status=JobStatus.QUEUED,
                attempts=0,
                analysis_started_at=None,
                analysis_finished_at=None,
                finished_at=None,
                prediction=None,
            )
        )


def _start_workers(
    count: int, env: dict[str, str], log_dir: Path, *, pin: bool
) -> list[subprocess.Popen[bytes]]:
    """``count`` inference processes; with ``pin``, worker i may run on CPU i only."""
    for old in log_dir.glob("worker*.log"):
        old.unlink()
    cpus = sorted(os.sched_getaffinity(0))
    workers = []
    for i in range(count):
        log = (log_dir / f"worker{i}.log").open("wb")
        cpu = {cpus[i % len(cpus)]}
        workers.append(
            subprocess.Popen(
                [PULMOGATE, "inference"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=log_dir,
                preexec_fn=functools.partial(os.sched_setaffinity, 0, cpu) if pin else None,
            )
        )
    return workers


def _cpu_seconds(workers: list[subprocess.Popen[bytes]]) -> float:
    """User + system CPU time of the worker processes so far (all their threads)."""
    ticks = 0
    for worker in workers:
        fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _events(path: Path) -> list[dict[str, object]]:
    events = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


async def _wait_started(workers: list[subprocess.Popen[bytes]], log_dir: Path) -> None:
    """Until every worker has subscribed (logged 'service started')."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for i, worker in enumerate(workers):
            if worker.poll() is not None:
                raise SystemExit(f"worker {i} exited: {(log_dir / f'worker{i}.log').read_text()}")
        started = [
            any(e.get("event") == "service started" for e in _events(log_dir / f"worker{i}.log"))
            for i in range(len(workers))
        ]
        if all(started):
            return
        await asyncio.sleep(0.3)
    raise SystemExit("workers did not start within 120 s")


async def _publish_and_wait(
    db: Database, amqp_url: str, job_ids: list[int], workers: list[subprocess.Popen[bytes]]
) -> float:
    """Publish ``analysis.requested`` for the jobs; seconds until all of them are finished."""
    bus = make_bus(amqp_url)
    await bus.connect()
    started = time.perf_counter()
    for job_id in job_ids:
        await bus.publish(AnalysisRequested(job_id=job_id))
    await bus.close()
    while True:
        async with db.session() as session:
            done = await session.scalar(
                select(func.count()).where(Job.id.in_(job_ids), Job.status.in_(FINISHED))
            )
        if done == len(job_ids):
            return time.perf_counter() - started
        if any(w.poll() is not None for w in workers):
            raise SystemExit("a worker died during the run; see its log")
        await asyncio.sleep(0.2)


async def _measure(
    db: Database,
    amqp_url: str,
    warmup_ids: list[int],
    job_ids: list[int],
    env: dict[str, str],
    log_dir: Path,
    *,
    pin: bool,
) -> Run:
    """Start one worker per warm-up job, warm them up, then time the measured jobs."""
    count = len(warmup_ids)
    await _reset_jobs(db, warmup_ids + job_ids)
    workers = _start_workers(count, env, log_dir, pin=pin)
    try:
        await _wait_started(workers, log_dir)
        # Idle consumers with prefetch 1 get one message each: every worker loads its code once.
        await _publish_and_wait(db, amqp_url, warmup_ids, workers)
        cpu_before = _cpu_seconds(workers)
        seconds = await _publish_and_wait(db, amqp_url, job_ids, workers)
        cpu_seconds = _cpu_seconds(workers) - cpu_before
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
    per_worker = [
        [
            int(e["job_id"])  # type: ignore[call-overload]
            for e in _events(log_dir / f"worker{i}.log")
            if e.get("event") in {"job analysed", "job not analysed"}
            and e.get("job_id") not in warmup_ids
        ]
        for i in range(count)
    ]
    async with db.session() as session:
        jobs = (await session.scalars(select(Job).where(Job.id.in_(job_ids)))).all()
        started_logs = Counter(
            (
                await session.scalars(
                    select(JobLog.job_id).where(
                        JobLog.job_id.in_(job_ids), JobLog.message.startswith("analysis started")
                    )
                )
            ).all()
        )
    return Run(
        workers=count,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        per_worker=per_worker,
        statuses=Counter(str(j.status) for j in jobs),
        attempts=Counter(j.attempts for j in jobs),
        started_logs=started_logs,
        stage_seconds={
            stage: statistics.mean(float(j.timings.get(stage, 0.0)) for j in jobs)
            for stage in sorted({s for j in jobs for s in j.timings})
        },
    )


def _check(run: Run, job_ids: list[int]) -> list[str]:
    """What went wrong: lost jobs, jobs analysed twice (empty when all is well)."""
    problems = []
    done = Counter(job for jobs in run.per_worker for job in jobs)
    if twice := sorted(job for job, n in done.items() if n > 1):
        problems.append(f"{run.workers} workers: jobs analysed more than once: {twice}")
    if lost := sorted(set(job_ids) - set(done)):
        problems.append(f"{run.workers} workers: jobs no worker reported: {lost}")
    if set(run.attempts) != {1}:
        problems.append(f"{run.workers} workers: attempts per job {dict(run.attempts)}")
    if set(run.started_logs.values()) != {1} or len(run.started_logs) != len(job_ids):
        problems.append(f"{run.workers} workers: 'analysis started' log lines per job not all 1")
    return problems


def _rabbitmqctl(*args: str, check: bool = True) -> None:
    subprocess.run([RABBITMQCTL, *args], check=check, capture_output=True)


async def _bench(
    db_url: str,
    amqp_url: str,
    data_dir: Path,
    series_files: list[list[Path]],
    counts: list[int],
    pin: bool,
) -> tuple[list[Run], list[str]]:
    """Record the jobs, then measure each worker count in turn."""
    db = Database(db_url)
    all_ids = await _record_jobs(db, series_files)
    warmup_ids, job_ids = all_ids[: max(counts)], all_ids[max(counts) :]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULMOGATE_")}
    env.update(
        PULMOGATE_DATA_DIR=str(data_dir),
        PULMOGATE_DATABASE_URL=db_url,
        PULMOGATE_BROKER_URL=amqp_url,
        PULMOGATE_EXECUTION_PROVIDER="cpu",
        PULMOGATE_LOG_FORMAT="json",
    )
    runs, problems = [], []
    try:
        for count in counts:
            run = await _measure(db, amqp_url, warmup_ids[:count], job_ids, env, data_dir, pin=pin)
            runs.append(run)
            problems += _check(run, job_ids)
    finally:
        await db.dispose()
    return runs, problems


def main() -> int:
    """Prepare the jobs, measure each worker count, print the table and the checks."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument(
        "--workers",
        default="1,2",
        help="comma-separated worker counts, run in this order (e.g. 1,2,2,1 to even out drift in "
        "the machine's load); speed-up is relative to the mean of the smallest count's runs",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let every worker use every CPU (default: worker i on CPU i, like one replica per core)",
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",")]

    name = f"bench_scale_{uuid.uuid4().hex[:8]}"
    _psql(f'CREATE DATABASE "{name}"')
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    host = PG_ADMIN.rsplit("/", 1)[0].split("://", 1)[1]
    db_url = f"postgresql+asyncpg://{host}/{name}"
    amqp_url = f"{AMQP_BASE}/{name}"
    try:
        upgrade(db_url)
        with tempfile.TemporaryDirectory(prefix="pulmogate-scale-") as tmp:
            data_dir = Path(tmp)
            t = time.perf_counter()
            total = args.studies + max(counts)  # plus one warm-up study per worker
            series_files = _write_studies(data_dir / "incoming", total, args.slices, args.size)
            print(
                f"prepared {args.studies} (+{max(counts)} warm-up) phantom studies of {args.slices} slices "
                f"{args.size}x{args.size} in {time.perf_counter() - t:.1f} s"
            )
            capacity_before = _machine_capacity(max(counts))
            runs, problems = asyncio.run(
                _bench(db_url, amqp_url, data_dir, series_files, counts, not args.no_pin)
            )
            capacity_after = _machine_capacity(max(counts))
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _rabbitmqctl("delete_vhost", name, check=False)

    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
        f"workers {'share all CPUs' if args.no_pin else 'pinned one per CPU'}"
    )
    print(
        f"machine capacity ({max(counts)} pinned busy loops vs 1): {capacity_before:.2f}x before, "
        f"{capacity_after:.2f}x after: the ceiling for the speed-up"
    )
    print("workers  seconds  studies/min  speed-up  CPU s/study  jobs per worker  statuses")
    fewest = min(counts)
    baseline = statistics.mean(r.studies_per_minute for r in runs if r.workers == fewest)
    for run in runs:
        speedup = run.studies_per_minute / baseline
        shares = "/".join(str(len(jobs)) for jobs in run.per_worker)
        print(
            f"{run.workers:>7}  {run.seconds:7.1f}  {run.studies_per_minute:11.1f}  "
            f"{speedup:7.2f}x  {run.cpu_seconds / sum(run.statuses.values()):11.1f}  "
            f"{shares:>15}  {dict(run.statuses)}"
        )
    print("mean wall seconds per study and stage, inside the workers (job.timings):")
    for run in runs:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in run.stage_seconds.items())
        print(f"  {run.workers} workers: {stages}")
    if len(runs) > len(set(counts)):
        for count in sorted(set(counts)):
            rates = [r.studies_per_minute for r in runs if r.workers == count]
            print(
                f"{count} workers: mean {statistics.mean(rates):.1f} studies/min over {len(rates)} "
                f"runs, {statistics.mean(rates) / baseline:.2f}x"
            )
    print("every job analysed exactly once" if not problems else "\n".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
