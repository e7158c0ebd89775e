"""Receiver throughput on one association, side by side with what pynetdicom and the disk allow.

Writes one phantom CT series (default 300 slices of 512x512), then sends it with dcmtk's
storescu over one association to each target in turn, round after round (the targets are
interleaved so that a change in the machine's load hits them all alike):

- ``bare``: a pynetdicom SCP whose C-STORE handler answers success and keeps nothing, the
  ceiling pynetdicom itself allows on this machine;
- ``durable``: a minimal durable pynetdicom SCP: per instance it writes the encoded dataset
  to a temporary file, fsyncs it, renames it into place and fsyncs the folder, then answers
  success. The same guarantee as the receiver's with nothing else: the disk's limit;
- ``orthanc``: Orthanc from Debian's package, its defaults (SQLite index, files on disk), a
  real PACS receiving the same series;
- ``sqlite`` / ``postgres``: the real ``pulmogate receiver`` process (success only when the
  instance can no longer be lost, docs/reliability.md) on the embedded SQLite default or on
  a fresh Postgres database.

Each target runs in its own process, pynetdicom's defaults apart from the AE title. Prints
every run with the load average, then per target the median, the range and the ratio of
each round to the durable SCP of the same round. Asserts nothing.

    .venv/bin/python bench/receive.py --slices 300 --size 512 --rounds 3
    .venv/bin/python bench/receive.py --targets durable,sqlite --rounds 5

Orthanc takes about 15 s per 300-slice send here; ``--targets bare,durable,sqlite,postgres``
leaves it out.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pulmogate.tools.phantom import make_phantom, write_series
from tests.fixtures.infra import free_port, wait_for_echo
from tests.fixtures.orthanc import run_orthanc

BIN = Path(sys.executable).parent
TARGETS = ("bare", "durable", "orthanc", "sqlite", "postgres")
LABELS = {
    "bare": "bare pynetdicom SCP",
    "durable": "minimal durable SCP",
    "orthanc": "Orthanc (apt)",
    "sqlite": "pulmogate (sqlite)",
    "postgres": "pulmogate (postgres)",
}
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
DURABLE_SCP = """
import os, sys
from pynetdicom import AE, evt, AllStoragePresentationContexts
from pynetdicom.sop_class import Verification
folder = sys.argv[2]
os.makedirs(folder, exist_ok=True)

def on_store(event):
    data = event.encoded_dataset(include_meta=True)
    final = os.path.join(folder, str(event.request.AffectedSOPInstanceUID) + ".dcm")
    tmp = final + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return 0x0000

ae = AE(ae_title="PULMOGATE")
ae.supported_contexts = AllStoragePresentationContexts
ae.add_supported_context(Verification)
ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True,
                evt_handlers=[(evt.EVT_C_STORE, on_store)])
"""


def load_average() -> float:
    """The 1-minute load average now."""
    return os.getloadavg()[0]


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


def _drop(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE {name} WITH (FORCE)"],
        check=False,
        capture_output=True,
    )


@contextmanager
def running(target: str, tmp: Path) -> Iterator[int]:
    """Start the target SCP in its own process; yield its port; stop it."""
    if target == "orthanc":
        folder = tmp / f"orthanc-{uuid.uuid4().hex[:6]}"
        folder.mkdir()
        try:
            with run_orthanc(folder, {}) as orthanc:
                yield orthanc.dicom_port
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    port = free_port()
    env = dict(os.environ)
    data = tmp / f"data-{target}-{uuid.uuid4().hex[:6]}"
    url = ""
    if target == "bare":
        cmd = [sys.executable, "-c", BARE_SCP, str(port)]
    elif target == "durable":
        cmd = [sys.executable, "-c", DURABLE_SCP, str(port), str(data)]
    else:
        url = _postgres_url() if target == "postgres" else ""
        env |= {
            "PULMOGATE_DATA_DIR": str(data),
            "PULMOGATE_DICOM_HOST": "127.0.0.1",
            "PULMOGATE_DICOM_PORT": str(port),
            "PULMOGATE_DATABASE_URL": url,
            "PULMOGATE_BROKER_URL": "memory://",
            "PULMOGATE_LOG_LEVEL": "WARNING",
            "PULMOGATE_ACCEPT_FROM": "any",  # storescu's default AE is named by no rule here
        }
        subprocess.run(
            [str(BIN / "pulmogate"), "db", "upgrade"], env=env, check=True, capture_output=True
        )
        cmd = [str(BIN / "pulmogate"), "receiver"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_echo(port, proc, "SCP")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if url:
            _drop(url)
        shutil.rmtree(data, ignore_errors=True)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--sends", type=int, default=3, help="series sent to each target per round, interleaved"
    )
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated")
    args = parser.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {TARGETS}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        phantom = make_phantom(slices=args.slices, size=args.size, seed=1)
        # One series per send of a round (new UIDs each): the receiver stores each anew.
        series = [write_series(phantom, tmp / f"ct{k}", seed=k) for k in range(args.sends)]
        count = len(series[0])
        megabytes = sum(f.stat().st_size for f in series[0]) / 1e6
        print(
            f"{count} instances, {megabytes:.0f} MB, dcmtk storescu, one association, "
            f"{os.cpu_count()} CPUs, load average {load_average():.2f} at the start; "
            f"{args.rounds} rounds, {args.sends} sends per target per round, interleaved"
        )
        print(
            f"{'round':>5} {'send':>4}  {'target':<22}{'seconds':>9}{'inst/s':>9}{'MB/s':>7}{'load':>7}"
        )
        rates: dict[str, list[float]] = {t: [] for t in targets}
        round_ratios: dict[str, list[float]] = {t: [] for t in targets}
        for round_no in range(1, args.rounds + 1):
            this_round: dict[str, list[float]] = {t: [] for t in targets}
            with ExitStack() as stack:
                ports = {t: stack.enter_context(running(t, tmp)) for t in targets}
                for send_no, files in enumerate(series, start=1):
                    for target in targets:
                        seconds = _send(ports[target], files)
                        rate = count / seconds
                        this_round[target].append(rate)
                        rates[target].append(rate)
                        print(
                            f"{round_no:>5} {send_no:>4}  {LABELS[target]:<22}{seconds:>9.2f}"
                            f"{rate:>9.1f}{megabytes / seconds:>7.1f}{load_average():>7.2f}",
                            flush=True,
                        )
            if "durable" in this_round:
                durable = statistics.median(this_round["durable"])
                for target in targets:
                    round_ratios[target].append(statistics.median(this_round[target]) / durable)
        print(f"load average {load_average():.2f} at the end")
        print(f"{'target':<22}  inst/s median (range)   ratio of medians to durable, per round")
        for target in targets:
            ratio = ""
            if "durable" in rates and target != "durable":
                per_round = round_ratios[target]
                ratio = ", ".join(f"{x:.0%}" for x in per_round)
                ratio += f"  (median {statistics.median(per_round):.0%})"
            print(f"{LABELS[target]:<22}  {_spread(rates[target]):<22} {ratio}")


if __name__ == "__main__":
    main()
