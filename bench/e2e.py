"""End-to-end latency: from the series being complete to the results stored at the destination.

Runs a real gateway (``pulmogate up`` on the embedded default, or the five services on
RabbitMQ + Postgres with ``--distributed``), sends phantom chest CT series with dcmtk's storescu
and times, per study: C-STORE of the series, series completion (quiet period), analysis, and
delivery to a dcmtk storescp (which accepts every transfer syntax, ``+xa``), and the bytes
delivered, for each image encoding asked for (the destination's ``image_encoding`` is set
before its studies are sent). Prints figures; asserts nothing.

    .venv/bin/python bench/e2e.py --slices 300 --size 512 --studies 2 --encodings jpeg,uncompressed
"""

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pulmogate.tools.phantom import make_phantom, write_series
from tests.fixtures.gateway import add_route, run_gateway, storescp, storescu


def _ts(value: str | None) -> float:
    return datetime.fromisoformat(value).timestamp() if value else float("nan")


def _new_study(folder: Path, out: Path) -> Path:
    """A copy of a series under new study, series and instance UIDs."""
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    out.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    for path in sorted(folder.iterdir()):
        ds = dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(out / path.name)
    return out


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--studies", type=int, default=2)
    parser.add_argument("--quiet", type=float, default=1.0, help="series_quiet_seconds")
    parser.add_argument(
        "--distributed", action="store_true", help="RabbitMQ + Postgres, 5 processes"
    )
    parser.add_argument(
        "--encodings",
        default="jpeg",
        help="comma-separated image encodings of the destination, each run on --studies studies",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        commands = [["up"]]
        env: dict[str, str] = {"PULMOGATE_SERIES_QUIET_SECONDS": str(args.quiet)}
        db_url, broker = "", "memory://"
        if args.distributed:
            import subprocess
            import uuid

            name = f"pg_bench_{uuid.uuid4().hex[:8]}"
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f'CREATE DATABASE "{name}"'],
                check=True,
                capture_output=True,
            )
            db_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
            from pulmogate.common.db.migrate import upgrade

            upgrade(db_url)
            broker = "amqp://guest:guest@127.0.0.1:5672/"
            commands = [["receiver"], ["router"], ["inference"], ["sender"], ["api"]]
        series = []
        for i in range(args.studies):
            folder = tmp / f"s{i}"
            write_series(
                make_phantom(slices=args.slices, size=args.size, involvement=0.1 + 0.2 * i, seed=i),
                folder,
                seed=100 + i,
            )
            series.append(folder)
        print(
            f"mode={'distributed' if args.distributed else 'embedded'} slices={args.slices} size={args.size} quiet={args.quiet}s"
        )
        print(
            f"{'encoding':>12} {'study':>5} {'send_s':>7} {'complete->analysed_s':>21} {'analysis_s':>11} {'complete->delivered_s':>22} {'total_s':>8} {'delivered_MB':>13} {'attempts':>8} {'load1':>6}"
        )
        with (
            storescp(tmp) as (port, dest),
            run_gateway(tmp, commands, database_url=db_url, broker_url=broker, extra_env=env) as gw,
        ):
            rule = add_route(gw, port, source_ae_title="CT_SCANNER")
            runs = [
                (encoding, i, folder)
                for round_, encoding in enumerate(args.encodings.split(","))
                for i, folder in enumerate(
                    # a later round sends the series as new studies: nothing is deduplicated
                    [_new_study(f, tmp / f"{encoding}-{k}") for k, f in enumerate(series)]
                    if round_
                    else series
                )
            ]
            for done, (encoding, i, folder) in enumerate(runs, start=1):
                if i == 0:
                    with gw.client() as client:
                        changed = client.patch(
                            f"/api/v1/destinations/{rule['destination_ids'][0]}",
                            json={"image_encoding": encoding},
                        )
                        assert changed.status_code == 200, changed.text
                before = {p: p.stat().st_size for p in dest.iterdir()}
                t0 = time.time()
                result = storescu(gw.dicom_port, folder)
                assert result.returncode == 0, result.stderr
                sent = time.time()
                jobs = gw.wait_for_job(
                    lambda js, n=done: (
                        len(js) >= n and js[0]["status"] in ("done", "failed", "rejected")
                    ),
                    timeout=900,
                )
                with gw.client() as client:
                    job = client.get(f"/api/v1/jobs/{jobs[0]['id']}").json()
                complete = sent + args.quiet
                analysed = _ts(job.get("analysis_finished_at"))
                delivered = (
                    max(_ts(d.get("delivered_at")) for d in job["deliveries"])
                    if job["deliveries"]
                    else float("nan")
                )
                attempts = ",".join(str(d.get("attempts")) for d in job["deliveries"])
                delivered_bytes = sum(p.stat().st_size for p in dest.iterdir() if p not in before)
                print(
                    f"{encoding:>12} {i:>5} {sent - t0:>7.1f} {analysed - complete:>21.1f} {job.get('processing_time_s') or 0:>11.1f} "
                    f"{delivered - complete:>22.1f} {job.get('total_time_s') or 0:>8.1f} {delivered_bytes / 1e6:>13.1f} {attempts:>8} {os.getloadavg()[0]:>6.1f}  {job['status']}: {job.get('prediction')}"
                )
                print(f"      stage timings: {job.get('timings')}")


if __name__ == "__main__":
    main()
