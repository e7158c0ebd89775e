"""Would sending overlay slices as they are written shorten "analysed -> delivered"?

Renders and stores the overlay series of a phantom (JPEG, as the inference service writes
it: encode, fsync, rename) and delivers it to a dcmtk storescp in two ways, alternating:

- after: every slice written first, then one association sends them all (what PulmoGate does);
- while: one association opened before the first slice, each slice sent as soon as it is
  written (a sender thread beside the rendering, as "deliver while rendering" would).

Prints, per run, the seconds from the first slice rendered to the last one stored at the
destination, the process CPU seconds, and the load average. Asserts nothing.

    .venv/bin/python bench/stream.py --slices 300 --size 512 --runs 2
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom import dcmread
from pynetdicom import AE

from bench.outputs import make_case
from pulmogate.common.dicom.encoding import ImageEncoding, encoded
from pulmogate.common.dicom.scu import NO_DELAY, store
from pulmogate.common.storage import atomic_write, dataset_bytes
from pulmogate.inference.analysis import Analysis
from pulmogate.inference.outputs.overlay import iter_overlay
from pulmogate.inference.volume import Volume
from tests.fixtures.infra import free_port


def write_all(
    volume: Volume, analysis: Analysis, folder: Path, sink: queue.Queue[Path | None] | None
) -> list[Path]:
    """Render, encode and store each overlay slice; hand each path to ``sink`` once stored."""
    paths = []
    for k, ds in enumerate(iter_overlay(volume, analysis)):
        path = folder / f"{k:04d}.dcm"
        atomic_write(path, dataset_bytes(encoded(ds, ImageEncoding.JPEG)))
        paths.append(path)
        if sink is not None:
            sink.put(path)
    if sink is not None:
        sink.put(None)
    return paths


def send_from(sink: queue.Queue[Path | None], port: int, sop_class: str, done: list[float]) -> None:
    """One association, opened at once; C-STORE each path as it arrives."""
    from pydicom.uid import JPEGBaseline8Bit

    ae = AE(ae_title="PULMOGATE")
    ae.add_requested_context(sop_class, [JPEGBaseline8Bit])
    assoc = ae.associate("127.0.0.1", port, ae_title="DEST", evt_handlers=NO_DELAY)
    assert assoc.is_established
    try:
        while (path := sink.get()) is not None:
            status = assoc.send_c_store(dcmread(path))
            assert status and status.Status == 0
    finally:
        assoc.release()
    done.append(time.perf_counter())


def main() -> None:
    """Alternate the two ways and print a line per run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        volume, analysis = make_case(args.slices, args.size, tmp / "series")
        port = free_port()
        (tmp / "dest").mkdir()
        scp = subprocess.Popen(
            ["/usr/bin/storescp", "-aet", "DEST", "+xa", "-od", str(tmp / "dest"), str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
        sop_class = "1.2.840.10008.5.1.4.1.1.7"
        print(
            f"{'way':>6} {'render+store_s':>15} {'send_after_s':>13} {'first->delivered_s':>19} {'cpu_s':>6} {'load1':>6}"
        )
        try:
            for run in range(args.runs):
                for way in ("after", "while"):
                    folder = tmp / f"{way}-{run}"
                    folder.mkdir()
                    cpu0, t0 = os.times(), time.perf_counter()
                    if way == "after":
                        paths = write_all(volume, analysis, folder, None)
                        written = time.perf_counter()
                        result = store(paths, "127.0.0.1", port, "DEST")
                        assert result.ok and result.sent == len(paths)
                        end = time.perf_counter()
                        send_after = end - written
                    else:
                        sink: queue.Queue[Path | None] = queue.Queue()
                        done: list[float] = []
                        sender = threading.Thread(
                            target=send_from, args=(sink, port, sop_class, done)
                        )
                        sender.start()
                        write_all(volume, analysis, folder, sink)
                        written = time.perf_counter()
                        sender.join()
                        end = done[0]
                        send_after = end - written
                    cpu1 = os.times()
                    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
                    print(
                        f"{way:>6} {written - t0:>15.2f} {send_after:>13.2f} {end - t0:>19.2f} "
                        f"{cpu:>6.1f} {os.getloadavg()[0]:>6.1f}"
                    )
        finally:
            scp.terminate()
            scp.wait()


if __name__ == "__main__":
    main()
