"""Time the analysis engine on one 300-slice 512x512 phantom: load, segment, quantify, peak RSS.

Run: python bench/inference.py [--slices 300] [--size 512]
The phantom is generated and written in a child process, so the peak RSS printed is the
engine's own (load_volume + analyse), not the generator's.
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

from pulmogate.common.phantom import make_phantom, write_series
from pulmogate.inference.analysis import analyse
from pulmogate.inference.volume import load_volume


def _write(folder: str, slices: int, size: int, involvement: float) -> None:
    """Generate the phantom and write it as DICOM files (runs in a child process)."""
    started = time.perf_counter()
    phantom = make_phantom(slices=slices, size=size, involvement=involvement)
    generated = time.perf_counter()
    write_series(phantom, Path(folder))
    print(f"phantom generation    {generated - started:6.2f} s (not part of the analysis)")
    print(f"write DICOM files     {time.perf_counter() - generated:6.2f} s (not part of it)")
    print(f"phantom involvement   {phantom.involvement_percent:6.2f} %")


def main() -> None:
    """Write one phantom series, then load and analyse it here; print timings and memory."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--involvement", type=float, default=0.3)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, onnxruntime {ort.__version__}")
    print(f"providers available: {ort.get_available_providers()}")
    with tempfile.TemporaryDirectory() as folder:
        child = multiprocessing.Process(
            target=_write, args=(folder, args.slices, args.size, args.involvement)
        )
        child.start()
        child.join()
        paths = sorted(Path(folder).glob("*.dcm"))
        started = time.perf_counter()
        volume = load_volume(paths)
        loaded = time.perf_counter()
    analysis = analyse(volume)
    print(f"volume: {volume.hu.shape} voxels, spacing {volume.spacing} mm")
    print(f"load_volume           {loaded - started:6.2f} s")
    for stage, seconds in analysis.timings.items():
        print(f"{stage:<21} {seconds:6.2f} s")
    total = (loaded - started) + sum(analysis.timings.values())
    print(f"load+segment+quantify {total:6.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS              {peak:6.0f} MiB")
    print(
        f"measured involvement  {analysis.total.percent:6.2f} %, grade CT-{analysis.grade}, "
        f"lung {analysis.total.lung_ml:.0f} ml"
    )


if __name__ == "__main__":
    main()
