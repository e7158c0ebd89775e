"""Time the DICOM outputs: overlay render+encode for 300 slices of 512x512, then SEG, SR, summary;
then the results' size per study and the encoding time in each image encoding.

Run: python bench/outputs.py [--slices 300] [--size 512]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

from pulmogate.common.dicom.encoding import ImageEncoding, deflated
from pulmogate.common.dicom.encoding import encoded as in_encoding
from pulmogate.inference.analysis import Analysis, Figures
from pulmogate.inference.outputs.overlay import build_overlay
from pulmogate.inference.outputs.seg import build_seg
from pulmogate.inference.outputs.sr import build_sr
from pulmogate.inference.outputs.summary import build_summary
from pulmogate.inference.volume import Volume
from pulmogate.tools.phantom import make_phantom, write_series


def _figures(lung: np.ndarray, lesions: np.ndarray, voxel_ml: float) -> Figures:
    """Volumes inside one lung mask."""
    return Figures(
        lung_ml=float(np.count_nonzero(lung)) * voxel_ml,
        ggo_ml=float(np.count_nonzero(lung & (lesions == 1))) * voxel_ml,
        consolidation_ml=float(np.count_nonzero(lung & (lesions == 2))) * voxel_ml,
    )


def make_case(slices: int, size: int, folder: Path) -> tuple[Volume, Analysis]:
    """A phantom series written to ``folder`` and read back, with its ground truth as analysis."""
    phantom = make_phantom(slices=slices, size=size, involvement=0.3)
    paths = write_series(phantom, folder)
    headers: list[pydicom.Dataset] = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    volume = Volume(
        hu=phantom.hu,
        spacing=phantom.spacing,
        positions=np.array([[float(v) for v in h.ImagePositionPatient] for h in headers]),
        orientation=tuple(float(v) for v in headers[0].ImageOrientationPatient),
        headers=headers,
    )
    voxel_ml = float(np.prod(phantom.spacing)) / 1000.0
    analysis = Analysis(
        lungs=phantom.lungs,
        lesions=phantom.lesions,
        right=_figures(phantom.lungs == 1, phantom.lesions, voxel_ml),
        left=_figures(phantom.lungs == 2, phantom.lesions, voxel_ml),
        total=_figures(phantom.lungs > 0, phantom.lesions, voxel_ml),
        grade=2,
        model_name="qct",
        model_version="bench",
    )
    return volume, analysis


def encode(dataset: pydicom.Dataset) -> int:
    """Write a dataset as a DICOM file in memory; return its size in bytes."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.tell()


def main() -> None:
    """Print the seconds each output takes for one phantom series."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        volume, analysis = make_case(args.slices, args.size, Path(folder))
    shape = "x".join(str(n) for n in volume.hu.shape)

    started = time.perf_counter()
    overlay = build_overlay(volume, analysis)
    rendered = time.perf_counter()
    size = sum(encode(ds) for ds in overlay)
    encoded = time.perf_counter()
    print(f"volume {shape}: overlay {len(overlay)} images ({size / 1e6:.0f} MB)")
    print(f"overlay render   {rendered - started:6.2f} s")
    print(f"overlay encode   {encoded - rendered:6.2f} s")
    print(f"overlay total    {encoded - started:6.2f} s")

    started = time.perf_counter()
    summary = build_summary(volume, analysis)
    encode(summary)
    print(f"summary page     {time.perf_counter() - started:6.2f} s")
    started = time.perf_counter()
    seg = build_seg(volume, analysis)
    assert seg is not None
    seg_bytes = encode(seg.dataset)
    print(f"seg              {time.perf_counter() - started:6.2f} s")
    started = time.perf_counter()
    sr_bytes = encode(build_sr(volume, analysis, seg))
    print(f"sr               {time.perf_counter() - started:6.2f} s")

    # Results per study in each image encoding: the pictures encoded from the rendering
    # (as the inference service stores them), the SEG deflated unless "uncompressed".
    started = time.perf_counter()
    deflated_bytes = encode(deflated(seg.dataset))
    deflate_s = time.perf_counter() - started
    print(
        f"seg deflated     {deflate_s:6.2f} s ({seg_bytes / 1e6:.1f} MB -> {deflated_bytes / 1e6:.2f} MB)"
    )
    print()
    print("encoding       overlay MB  summary MB  SEG MB  SR MB  total MB  overlay encode+write s")
    for encoding in ImageEncoding:
        started = time.perf_counter()
        overlay_bytes = sum(encode(in_encoding(ds, encoding)) for ds in overlay)
        seconds = time.perf_counter() - started
        summary_bytes = encode(in_encoding(summary, encoding))
        segment = seg_bytes if encoding is ImageEncoding.UNCOMPRESSED else deflated_bytes
        total = overlay_bytes + summary_bytes + segment + sr_bytes
        print(
            f"{encoding.value:<14} {overlay_bytes / 1e6:>10.1f}  {summary_bytes / 1e6:>10.2f}  "
            f"{segment / 1e6:>6.2f}  {sr_bytes / 1e6:>5.2f}  {total / 1e6:>8.1f}  {seconds:>8.2f}"
        )


if __name__ == "__main__":
    main()
