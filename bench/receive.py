"""Receiver throughput: instances/s into ``pulmogate receiver`` (durable writes) vs a bare SCP.

Writes one phantom CT series (default 300 slices of 512x512), then sends it with dcmtk's
storescu over one association to:

- ``bare``: a pynetdicom SCP whose C-STORE handler answers success and keeps nothing, the
  ceiling pynetdicom itself allows on this machine;
- ``pulmogate``: the real receiver process (fsync'd file + committed row before each success),
  on the embedded SQLite default, or on Postgres with ``--postgres``.

Each target runs in its own process; prints instances/s and MB/s per run. Asserts nothing.

    .venv/bin/python bench/receive.py --slices 300 --size 512 --runs 2 [--postgres]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pulmogate.tools.phantom import make_phantom, write_series
from tests.fixtures.infra import free_port, wait_for_echo

BIN = Path(sys.executable).parent
BARE_SCP = """
import sys
from pynetdicom import AE, evt, AllStoragePresentationContexts
from pynetdicom.sop_class import Verification
ae = AE(ae_title="PULMOGATE")
ae.supported_contexts = AllStoragePresentationContexts
ae.add_supported_context(Verification)
ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True,
                evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)])
"""


def _send(port: int, files: list[Path]) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["/usr/bin/storescu", "-aec", "PULMOGATE", "127.0.0.1", str(port), *map(str, files)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def _postgres_url() -> str:
    name = f"pg_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {name}"],
        check=True,
    )
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def run_target(target: str, files: list[Path], tmp: Path, postgres: bool) -> float:
    """Start the target SCP, send the series once, stop it; return seconds."""
    port = free_port()
    env = dict(os.environ)
    if target == "bare":
        cmd = [sys.executable, "-c", BARE_SCP, str(port)]
    else:
        data = tmp / f"data-{uuid.uuid4().hex[:6]}"
        env |= {
            "PULMOGATE_DATA_DIR": str(data),
            "PULMOGATE_DICOM_HOST": "127.0.0.1",
            "PULMOGATE_DICOM_PORT": str(port),
            "PULMOGATE_DATABASE_URL": _postgres_url() if postgres else "",
            "PULMOGATE_LOG_LEVEL": "WARNING",
            "PULMOGATE_ACCEPT_FROM": "any",  # storescu's default AE is named by no rule here
        }
        subprocess.run([str(BIN / "pulmogate"), "db", "upgrade"], env=env, check=True)
        cmd = [str(BIN / "pulmogate"), "receiver"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_echo(port, proc, "SCP")
        return _send(port, files)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--postgres", action="store_true", help="receiver on Postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = write_series(make_phantom(slices=args.slices, size=args.size, seed=1), tmp / "ct")
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        backend = "postgres" if args.postgres else "sqlite"
        print(f"{len(files)} instances, {megabytes:.0f} MB, dcmtk storescu, one association")
        print(f"{'target':<22}{'run':>4}{'seconds':>10}{'inst/s':>10}{'MB/s':>8}")
        best: dict[str, float] = {}
        for target in ("bare", "pulmogate"):
            label = "bare pynetdicom" if target == "bare" else f"pulmogate ({backend})"
            times = []
            for run in range(1, args.runs + 1):
                seconds = run_target(target, files, tmp, args.postgres)
                times.append(seconds)
                rate = len(files) / seconds
                print(
                    f"{label:<22}{run:>4}{seconds:>10.2f}{rate:>10.1f}{megabytes / seconds:>8.1f}"
                )
            best[target] = statistics.median(times)
        ratio = best["bare"] / best["pulmogate"]
        print(f"pulmogate reaches {ratio:.0%} of the bare SCP's rate (medians)")


if __name__ == "__main__":
    main()
