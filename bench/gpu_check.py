"""Whether the analysis really runs on a GPU: build the qct segmenter on the given provider as
the service does, segment a small phantom (so that every graph's session is created) and print
each ONNX session's first provider. Exits 1 when a session fell back to the CPU.
Run: python bench/gpu_check.py [--provider cuda|tensorrt]"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pulmogate.inference.segment import load_segmenter
from pulmogate.inference.segment.onnx_runtime import session_providers
from pulmogate.inference.volume import load_volume
from pulmogate.tools.phantom import make_phantom, write_series


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--provider", default="cuda", choices=["cuda", "tensorrt", "cpu"])
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}, available: {ort.get_available_providers()}")
    segmenter = load_segmenter("qct", args.provider)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_series(make_phantom(slices=60, size=192, involvement=0.2), Path(folder))
        volume = load_volume(paths)
    lungs, lesions = segmenter.segment(volume)
    print(
        f"phantom: {int(np.count_nonzero(lungs))} lung voxels, {int(np.count_nonzero(lesions))} lesion voxels"
    )
    used = session_providers()
    for key, provider in sorted(used.items()):
        print(f"session {key:<28} {provider}")
    wanted = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
    expected = wanted.get(args.provider, "CPUExecutionProvider")
    on_cpu = sorted(k for k, p in used.items() if p != expected)
    if not used or on_cpu:
        print(f"not on {expected}: {on_cpu or 'no session was created'}")
        return 1
    print(f"every session runs on {expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
