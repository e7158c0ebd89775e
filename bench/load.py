"""Receiver load: N concurrent associations, each sending its own CT series.

Starts ``pulmogate receiver`` (Postgres by default, a fresh database; durable writes:
each success after the fsync'd file, rows in groups), then opens ``--associations``
pynetdicom associations at once, each C-STOREing one series of ``--slices`` slices
(new study/series/SOP UIDs per association, files sent as they are on disk). Prints
instances/s, MB/s, C-STORE latency percentiles (request to response, per instance),
the receiver's peak RSS, and the check that nothing was lost or duplicated: rows,
distinct SOP Instance UIDs and files against the instances that got a success, and
every series announced once. Asserts nothing; the exit code is 1 when something was
lost or duplicated.

    .venv/bin/python bench/load.py --associations 20 --slices 300 --size 256
    .venv/bin/python bench/load.py --pipeline --associations 20 --slices 100

``--pipeline`` runs all five services on RabbitMQ with a recording destination and also
waits for every job to be final and checks every output was delivered once.
"""

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from pulmogate.tools.phantom import make_phantom, write_series
from tests.fixtures.infra import free_port, wait_for_echo
from tests.reliability.scu import responses_only_to_requests

BIN = Path(sys.executable).parent


def make_series(template: list[Path], out: Path) -> list[Path]:
    """A copy of the template series with new study, series and SOP Instance UIDs."""
    out.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for k, src in enumerate(template):
        ds = dcmread(src)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = out / f"{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def postgres_url() -> str:
    name = f"pg_load_{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {name}"],
        check=True,
    )
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def sql(url: str, query: str, sqlite_file: Path | None = None) -> str:
    """One value of a query on the receiver's database (Postgres ``url``, or the SQLite file)."""
    if not url:
        assert sqlite_file is not None
        with closing(sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True, timeout=30)) as db:
            return str(db.execute(query).fetchone()[0])
    libpq = url.replace("postgresql+asyncpg://", "postgresql://")
    return subprocess.run(
        ["psql", libpq, "-At", "-c", query], check=True, capture_output=True, text=True
    ).stdout.strip()


class RssSampler(threading.Thread):
    """Peak resident memory of a process, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.2)


def send(port: int, files: list[Path], latencies: list[float], acked: list[str]) -> None:
    """One association: C-STORE every file, recording each success and its latency."""
    ae = AE(ae_title="LOAD_SCU")
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    ae.dimse_timeout = 120
    ae.network_timeout = 120
    ae.acse_timeout = 120
    assoc = ae.associate("127.0.0.1", port, ae_title="PULMOGATE")
    if not assoc.is_established:
        raise RuntimeError("association refused")
    responses_only_to_requests(assoc)  # pynetdicom's requestor race: see tests/reliability/scu.py
    try:
        for path in files:
            uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            started = time.perf_counter()
            status = assoc.send_c_store(path)
            latencies.append(time.perf_counter() - started)
            if "Status" in status and int(status.Status) == 0:
                acked.append(uid)
    finally:
        assoc.release()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def receiver_alone(tmp: Path, url: str) -> Iterator[tuple[int, int, Callable[[], str]]]:
    """``pulmogate receiver`` alone on the memory bus: (port, pid, no pipeline report)."""
    port = free_port()
    env = dict(os.environ) | {
        "PULMOGATE_DATA_DIR": str(tmp / "data"),
        "PULMOGATE_DICOM_HOST": "127.0.0.1",
        "PULMOGATE_DICOM_PORT": str(port),
        "PULMOGATE_DATABASE_URL": url,
        "PULMOGATE_BROKER_URL": "memory://",
        "PULMOGATE_LOG_LEVEL": "WARNING",
        "PULMOGATE_SERIES_QUIET_SECONDS": "2",
        "PULMOGATE_ACCEPT_FROM": "any",
    }
    subprocess.run([str(BIN / "pulmogate"), "db", "upgrade"], env=env, check=True)
    log = (tmp / "receiver.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "pulmogate"), "receiver"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_echo(port, proc, "receiver")
        yield port, proc.pid, lambda: ""
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@contextmanager
def whole_pipeline(tmp: Path, url: str, jobs: int) -> Iterator[tuple[int, int, Callable[[], str]]]:
    """The five services as processes on Postgres and a fresh RabbitMQ vhost, a recording
    destination and a route to it; the report waits for every job to be final."""
    from pulmogate.common.db.migrate import upgrade
    from tests.fixtures.gateway import add_route, run_gateway
    from tests.reliability.recording_scp import recording_scp

    vhost = f"pg_load_{uuid.uuid4().hex[:8]}"
    ctl = "/usr/sbin/rabbitmqctl"
    subprocess.run([ctl, "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(
        [ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    upgrade(url)
    services = [["receiver"], ["router"], ["inference"], ["sender"], ["api"]]
    try:
        with (
            recording_scp() as dest,
            run_gateway(
                tmp,
                services,
                database_url=url,
                broker_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                extra_env={
                    "PULMOGATE_LOG_LEVEL": "WARNING",
                    "PULMOGATE_SERIES_QUIET_SECONDS": "2",
                    "PULMOGATE_ACCEPT_FROM": "any",
                },
            ) as gw,
        ):
            add_route(gw, dest.port, dest_aet=dest.ae_title, name="load")
            started = time.perf_counter()

            def report() -> str:
                final = gw.wait_for_job(
                    lambda items: (
                        len(items) >= jobs
                        and all(j["status"] in {"done", "failed", "rejected"} for j in items)
                    ),
                    timeout=3600,
                )
                seconds = time.perf_counter() - started
                statuses = sorted({j["status"] for j in final})
                with gw.client() as client:
                    details = [client.get(f"/api/v1/jobs/{j['id']}").json() for j in final]
                    retried = [
                        (d["id"], line["message"])
                        for d in details
                        if any(x["attempts"] > 1 for x in d["deliveries"])
                        for line in client.get(f"/api/v1/jobs/{d['id']}/log").json()
                        if line["service"] == "sender"
                    ]
                outputs = {o["sop_instance_uid"] for d in details for o in d["outputs"]}
                sent_twice = dest.duplicates(outputs)
                missing = outputs - set(dest.kept)
                attempts = sorted(x["attempts"] for d in details for x in d["deliveries"])
                lines = [
                    f"pipeline: {len(final)} jobs {statuses} {seconds:.0f} s after the first "
                    f"C-STORE; {len(outputs)} outputs delivered, missing {len(missing)}, "
                    f"sent twice {len(sent_twice)}; delivery attempts {attempts}",
                    *(f"  job {job_id}: {message}" for job_id, message in retried),
                ]
                return "\n".join(lines)

            yield gw.dicom_port, gw.processes["receiver"].pid, report
    finally:
        subprocess.run([ctl, "delete_vhost", vhost], check=False, capture_output=True)


def main() -> int:
    """Run the load and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--associations", type=int, default=20)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--sqlite", action="store_true", help="embedded SQLite, not Postgres")
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="all five services on RabbitMQ: analyse and deliver every series too",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data and logs folder")
    args = parser.parse_args()
    _config.STORE_SEND_CHUNKED_DATASET = True  # send files as stored, no re-encoding
    # pynetdicom's own warnings of the senders (e.g. a response its reactor took for itself).
    import logging

    logging.getLogger("pynetdicom").addHandler(logging.StreamHandler())
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)

    tmp = Path(tempfile.mkdtemp(prefix="pulmogate-load-"))
    url = ""
    try:
        # A 358 mm field of view at any matrix size, so the analysis finds real lungs.
        phantom = make_phantom(
            slices=args.slices,
            size=args.size,
            pixel_spacing_mm=358 / args.size,
            slice_thickness_mm=2.0 if args.pipeline else 1.25,
            seed=1,
        )
        template = write_series(phantom, tmp / "template")
        series = [make_series(template, tmp / f"a{i:02d}") for i in range(args.associations)]
        files = [f for s in series for f in s]
        megabytes = sum(f.stat().st_size for f in files) / 1e6

        url = "" if args.sqlite and not args.pipeline else postgres_url()
        target = (
            whole_pipeline(tmp, url, len(series)) if args.pipeline else receiver_alone(tmp, url)
        )
        with target as (port, pid, pipeline_report):
            rss = RssSampler(pid)
            rss.start()
            latencies: list[list[float]] = [[] for _ in series]
            acked: list[list[str]] = [[] for _ in series]
            threads = [
                threading.Thread(target=send, args=(port, s, latencies[i], acked[i]))
                for i, s in enumerate(series)
            ]
            load_before = os.getloadavg()[0]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.perf_counter() - started
            all_latencies = [x for lat in latencies for x in lat]
            successes = {u for a in acked for u in a}
            pipeline = pipeline_report()
            # Every series must be announced (quiet period after the last release).
            db_file = tmp / "data" / "pulmogate.db"

            def query(text: str) -> int:
                return int(sql(url, text, db_file))

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if query("SELECT count(*) FROM series WHERE status <> 'receiving'") == len(series):
                    break
                time.sleep(0.5)
            rows = query("SELECT count(*) FROM instances")
            distinct = query("SELECT count(DISTINCT sop_instance_uid) FROM instances")
            announced = query("SELECT count(*) FROM outbox WHERE routing_key = 'series.arrived'")
            complete = query("SELECT count(*) FROM series WHERE status <> 'receiving'")
            rss.stop.set()
        stored = sum(1 for p in (tmp / "data").rglob("*.dcm") if "incoming" in p.parts)
        lost = len(successes) - min(rows, stored)
        duplicates = rows - distinct
        backend = "sqlite" if not url else "postgres"
        print(
            f"{args.associations} associations x {args.slices} slices of {args.size}x{args.size}"
            f" ({len(files)} instances, {megabytes:.0f} MB), receiver on {backend}, "
            f"{os.cpu_count()} CPUs, load average {load_before:.2f} before, "
            f"{os.getloadavg()[0]:.2f} after"
        )
        print(
            f"wall {seconds:.1f} s: {len(files) / seconds:.1f} instances/s, "
            f"{megabytes / seconds:.1f} MB/s"
        )
        print(
            "C-STORE latency ms: "
            f"p50 {1000 * statistics.median(all_latencies):.1f}, "
            f"p95 {1000 * percentile(all_latencies, 0.95):.1f}, "
            f"p99 {1000 * percentile(all_latencies, 0.99):.1f}, "
            f"max {1000 * max(all_latencies):.1f}"
        )
        print(f"receiver peak RSS {rss.peak_kb / 1024:.0f} MiB")
        print(
            f"successes {len(successes)}/{len(files)}, rows {rows}, files {stored}, "
            f"series announced {complete}/{len(series)}, series.arrived staged {announced}, "
            f"lost {lost}, duplicates {duplicates}"
        )
        if pipeline:
            print(pipeline)
        return 0 if lost == 0 and duplicates == 0 and len(successes) == len(files) else 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        if url and not args.keep:
            name = url.rsplit("/", 1)[1]
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE {name}"],
                check=False,
                capture_output=True,
            )


if __name__ == "__main__":
    sys.exit(main())
