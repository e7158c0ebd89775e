"""The overlay series: each lung slice in a lung window with lesions marked in colour."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pydicom

from pulmogate.inference.outputs import render
from pulmogate.inference.outputs.attributes import (
    secondary_capture,
    series_description,
    set_rgb_pixels,
)
from pulmogate.inference.outputs.labels import text
from pulmogate.inference.outputs.numbering import slice_numbers

if TYPE_CHECKING:
    from pulmogate.inference.analysis import Analysis
    from pulmogate.inference.volume import Volume

OVERLAY_SERIES_NUMBER = 9001
RENDER_THREADS = 2
RENDER_AHEAD = 4  # pictures drawn ahead of the one being wrapped (4 x 0.8 MB at 512²)
GEOMETRY_KEYWORDS = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "SliceLocation",
    "FrameOfReferenceUID",
)


def lung_slices(analysis: Analysis) -> np.ndarray:
    """Indices (z) of the slices that hold lung."""
    return np.flatnonzero(analysis.lungs.reshape(analysis.lungs.shape[0], -1).any(axis=1))


def slice_areas_cm2(volume: Volume, analysis: Analysis) -> np.ndarray:
    """(z, 2) ground-glass and consolidation area per slice in cm²."""
    pixel_cm2 = volume.spacing[1] * volume.spacing[2] / 100.0
    flat = analysis.lesions.reshape(analysis.lesions.shape[0], -1)
    counts = np.stack([(flat == 1).sum(axis=1), (flat == 2).sum(axis=1)], axis=1)
    return counts * pixel_cm2


def font_size(columns: int) -> int:
    """Text height in pixels for an image ``columns`` wide."""
    return max(9, columns // 36)


def render_overlay_slice(volume: Volume, analysis: Analysis, z: int) -> np.ndarray:
    """The RGB picture of slice ``z`` (window and lesion marks, no text)."""
    return render.lesion_slice(render.window(volume.hu[z]), analysis.lesions[z])


class OverlayAnnotator:
    """Burns the legend, per-slice figures and the disclaimer into overlay slices."""

    def __init__(self, columns: int, language: str) -> None:
        """Pre-render the parts that are the same on every slice."""
        self.size = font_size(columns)
        self.columns = columns
        self.language = language
        self.legend = render.legend(
            (text("ggo", language), text("consolidation", language)), self.size, columns
        )
        self.disclaimer = render.text_mask([text("disclaimer", language)], self.size, columns)

    def annotate(
        self, rgb: np.ndarray, label: str, ggo_cm2: float, consolidation_cm2: float
    ) -> None:
        """Draw legend (top), this slice's areas in legend colours and the disclaimer, in place."""
        render.paste_opaque(rgb, self.legend, 0, 0)
        unit = text("area", self.language)
        figures = render.coloured_line(
            [
                (label, (255, 255, 255)),
                (f"{ggo_cm2:.2f} {unit}", render.GGO_COLOUR),
                (f"{consolidation_cm2:.2f} {unit}", render.CONSOLIDATION_COLOUR),
            ],
            self.size,
            self.columns,
        )
        bottom = rgb.shape[0] - figures.shape[0] - self.disclaimer.shape[0]
        render.paste_opaque(rgb, figures, bottom, 0)
        render.stamp(
            rgb, self.disclaimer, rgb.shape[0] - self.disclaimer.shape[0], colour=(255, 230, 120)
        )


def build_overlay(
    volume: Volume,
    analysis: Analysis,
    *,
    language: str = "en",
    institution: str | None = None,
    now: datetime | None = None,
) -> list[pydicom.Dataset]:
    """One Secondary Capture RGB image per input slice that holds lung, linked to its source."""
    return list(iter_overlay(volume, analysis, language=language, institution=institution, now=now))


def _pictures(volume: Volume, analysis: Analysis, slices: np.ndarray) -> Iterator[np.ndarray]:
    """The RGB pictures of ``slices`` in order, drawn a few slices ahead in worker threads
    (numpy releases the GIL; the DICOM headers are built meanwhile in the caller's thread)."""
    with ThreadPoolExecutor(max_workers=RENDER_THREADS) as pool:
        pending: deque[Future[np.ndarray]] = deque()
        for z in slices:
            pending.append(pool.submit(render_overlay_slice, volume, analysis, int(z)))
            if len(pending) > RENDER_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def iter_overlay(
    volume: Volume,
    analysis: Analysis,
    *,
    language: str = "en",
    institution: str | None = None,
    now: datetime | None = None,
) -> Iterator[pydicom.Dataset]:
    """The overlay images one at a time, so a caller can write each and let it go."""
    now = now or datetime.now()
    slices = lung_slices(analysis)
    areas = slice_areas_cm2(volume, analysis)
    annotator = OverlayAnnotator(volume.hu.shape[2], language)
    description = series_description("lesions", analysis)
    numbers = slice_numbers(volume)
    for index, (z, rgb) in enumerate(zip(slices, _pictures(volume, analysis, slices), strict=True)):
        source = volume.headers[z]
        ds = secondary_capture(
            volume,
            analysis,
            kind="overlay",
            index=index,
            series_number=OVERLAY_SERIES_NUMBER,
            description=description,
            institution=institution,
            now=now,
        )
        for keyword in GEOMETRY_KEYWORDS:
            if keyword in source:
                setattr(ds, keyword, source[keyword].value)
        reference = pydicom.Dataset()
        reference.ReferencedSOPClassUID = source.SOPClassUID
        reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
        ds.SourceImageSequence = [reference]
        ds.DerivationDescription = "Lung window W1500/L-600 with lesion marks"
        ds.InstanceNumber = numbers.number(int(z))  # its source's: both series scroll together
        label = f"{text('slice', language)} {numbers.label(int(z))}"
        annotator.annotate(rgb, label, float(areas[z, 0]), float(areas[z, 1]))
        set_rgb_pixels(ds, rgb)
        yield ds
