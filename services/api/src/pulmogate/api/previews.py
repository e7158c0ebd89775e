"""Key images of a job as small PNGs: the summary (or failure notice) page and overlay slices."""

import io
from pathlib import Path

PREVIEW_PX = 384
PICTURE_KINDS = ("summary", "notice", "overlay")


def png(path: Path) -> bytes:
    """A downsized PNG of a DICOM image (RGB secondary captures, or grey)."""
    import numpy as np
    from PIL import Image
    from pydicom import dcmread

    ds = dcmread(path)
    pixels = ds.pixel_array
    if pixels.ndim == 3 and pixels.shape[-1] != 3:
        pixels = pixels[pixels.shape[0] // 2]
    if pixels.ndim == 2:
        lo, hi = float(pixels.min()), float(pixels.max())
        pixels = ((pixels - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)
    image = Image.fromarray(pixels.astype(np.uint8))
    image.thumbnail((PREVIEW_PX, PREVIEW_PX))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
