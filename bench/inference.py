"""Time the analysis engine on one 300-slice 512x512 phantom: every stage and the peak RSS.

Run: python bench/inference.py [--slices 300] [--size 512] [--provider auto|cpu|cuda|tensorrt]
Stages: load (read, check, decode the DICOM files), segment, quantify, render (build the
overlay series, summary page, SEG and SR), encode (each output object to DICOM bytes, as
the service writes them). The phantom is generated and written in a child process, so the
peak RSS printed is the engine's own, not the generator's. Session creation and warm-up
happen before the clock starts, as in the service (once per worker).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import onnxruntime as ort

from pulmogate.common.storage import dataset_bytes
from pulmogate.inference.analysis import analyse, default_segmenter
from pulmogate.inference.outputs import build_outputs, iter_outputs
from pulmogate.inference.volume import load_volume
from pulmogate.tools.phantom import make_phantom, write_series


def _write(folder: str, slices: int, size: int, involvement: float, thickness: float) -> None:
    """Generate the phantom and write it as DICOM files (runs in a child process)."""
    started = time.perf_counter()
    phantom = make_phantom(
        slices=slices, size=size, involvement=involvement, slice_thickness_mm=thickness
    )
    generated = time.perf_counter()
    write_series(phantom, Path(folder))
    print(f"phantom generation    {generated - started:6.2f} s (not part of the analysis)")
    print(f"write DICOM files     {time.perf_counter() - generated:6.2f} s (not part of it)")
    print(f"phantom involvement   {phantom.involvement_percent:6.2f} %")


class _Clock:
    """Wall and CPU seconds (this process, all threads) per stage."""

    def __init__(self) -> None:
        self.laps: dict[str, tuple[float, float]] = {}
        self.peaks: dict[str, float] = {}  # peak RSS (MiB) reached by the end of each stage
        self._wall, self._cpu = time.perf_counter(), self._cpu_now()

    @staticmethod
    def _cpu_now() -> float:
        times = os.times()
        return times.user + times.system

    def lap(self, stage: str) -> None:
        wall, cpu = time.perf_counter(), self._cpu_now()
        self.laps[stage] = (wall - self._wall, cpu - self._cpu)
        self.peaks[stage] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self._wall, self._cpu = wall, cpu


def main() -> None:
    """Write one phantom series, then load and analyse it here; print timings and memory."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--involvement", type=float, default=0.3)
    parser.add_argument("--thickness", type=float, default=1.25, help="slice thickness, mm")
    parser.add_argument("--stream", action="store_true", help="iter_outputs, not a list")
    parser.add_argument("--model", default="qct")
    parser.add_argument("--provider", default="auto")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, onnxruntime {ort.__version__}")
    print(f"providers available: {ort.get_available_providers()}")
    started = time.perf_counter()
    segmenter = default_segmenter(args.model, args.provider)
    print(f"session creation and warm-up {time.perf_counter() - started:5.2f} s (once per worker)")
    with tempfile.TemporaryDirectory() as folder:
        child = multiprocessing.Process(
            target=_write, args=(folder, args.slices, args.size, args.involvement, args.thickness)
        )
        child.start()
        child.join()
        paths = sorted(Path(folder).glob("*.dcm"))
        clock = _Clock()
        volume = load_volume(paths)
        clock.lap("load")
    analysis = analyse(volume, segmenter)
    clock.lap("segment+quantify")
    if args.stream:  # build, encode and drop each object in turn (iter_outputs)
        sizes = [len(dataset_bytes(obj.dataset)) for obj in iter_outputs(volume, analysis)]
        count, encoded = len(sizes), sum(sizes)
        clock.lap("render+encode")
    else:
        objects = build_outputs(volume, analysis)
        count = len(objects)
        clock.lap("render")
        encoded = sum(len(dataset_bytes(obj.dataset)) for obj in objects)
        clock.lap("encode")
    print(f"volume: {volume.hu.shape} voxels, spacing {volume.spacing} mm")
    print("stage                   wall s   CPU s   peak RSS so far (MiB)")
    for stage, (wall, cpu) in clock.laps.items():
        print(f"{stage:<21} {wall:8.2f} {cpu:7.2f} {clock.peaks[stage]:8.0f}")
        if stage == "segment+quantify":
            for part, seconds in analysis.timings.items():
                print(f"  {part:<19} {seconds:8.2f}")
    walls = [wall for wall, _ in clock.laps.values()]
    cpus = [cpu for _, cpu in clock.laps.values()]
    print(f"total                 {sum(walls):8.2f} {sum(cpus):7.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS              {peak:6.0f} MiB")
    print(f"outputs               {count} objects, {encoded / 1e6:.0f} MB encoded")
    print(
        f"measured involvement  {analysis.total.percent:6.2f} %, grade CT-{analysis.grade}, "
        f"lung {analysis.total.lung_ml:.0f} ml"
    )
    times = os.times()
    print(f"CPU time (user+sys)   {times.user + times.system:6.1f} s in this process")
    print("load average          {:.2f} {:.2f} {:.2f} (1, 5, 15 min)".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
