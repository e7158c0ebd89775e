"""The summary page: figures, grade, prediction, key slices, model and disclaimer on one image."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from PIL import Image, ImageDraw

from pulmogate.inference.outputs import render
from pulmogate.inference.outputs.attributes import (
    secondary_capture,
    series_description,
    set_rgb_pixels,
)
from pulmogate.inference.outputs.labels import text
from pulmogate.inference.outputs.numbering import SliceNumbers, slice_numbers
from pulmogate.inference.outputs.overlay import lung_slices, render_overlay_slice

if TYPE_CHECKING:
    from pulmogate.inference.analysis import Analysis, Figures
    from pulmogate.inference.volume import Volume

SUMMARY_SERIES_NUMBER = 9002
PAGE_SIZE = (1024, 1280)  # width, height
KEY_SLICES = 6
TILE = 320
WHITE = (255, 255, 255)
GREY = (170, 170, 170)
ACCENT = (255, 230, 120)


def key_slices(analysis: Analysis, count: int = KEY_SLICES) -> list[int]:
    """The ``count`` most affected lung slices (by lesion area, else lung area), in z order."""
    flat_lesions = analysis.lesions.reshape(analysis.lesions.shape[0], -1)
    flat_lungs = analysis.lungs.reshape(analysis.lungs.shape[0], -1)
    lesion_area = np.count_nonzero(flat_lesions, axis=1)
    lung_area = np.count_nonzero(flat_lungs, axis=1)
    candidates = lung_slices(analysis)
    score = lesion_area[candidates] * (lung_area.max() + 1) + lung_area[candidates]
    best = candidates[np.argsort(-score, kind="stable")[:count]]
    return sorted(int(z) for z in best)


def wrap(draw: ImageDraw.ImageDraw, line: str, face: render.Font, width: int) -> list[str]:
    """Split ``line`` into lines no wider than ``width`` pixels."""
    lines: list[str] = []
    current = ""
    for word in line.split():
        candidate = f"{current} {word}".strip()
        if current and draw.textlength(candidate, font=face) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    return [*lines, current] if current else lines


def _figures_table(draw: ImageDraw.ImageDraw, analysis: Analysis, language: str, top: int) -> int:
    """Draw the per-lung and total figures as a table; return the y below it."""
    face, bold = render.font(24), render.font(24)
    columns = (40, 360, 580, 800)
    regions: list[tuple[str, Figures]] = [
        ("right", analysis.right),
        ("left", analysis.left),
        ("total", analysis.total),
    ]
    for column, (key, _) in zip(columns[1:], regions, strict=True):
        draw.text((column, top), text(key, language), fill=ACCENT, font=bold)
    rows = (
        ("lung_ml", lambda f: f"{f.lung_ml:.0f}"),
        ("ggo_ml", lambda f: f"{f.ggo_ml:.1f}"),
        ("consolidation_ml", lambda f: f"{f.consolidation_ml:.1f}"),
        ("percent", lambda f: f"{f.percent:.1f}"),
    )
    y = top + 44
    for key, value in rows:
        draw.text((columns[0], y), text(key, language), fill=GREY, font=face)
        for column, (_, figures) in zip(columns[1:], regions, strict=True):
            draw.text((column, y), value(figures), fill=WHITE, font=face)
        y += 38
    return y


def _montage(
    volume: Volume, analysis: Analysis, slices: list[int], numbers: SliceNumbers
) -> Image.Image:
    """Key slices with lesion marks, three per row, each scaled to a square tile and
    labelled with its source InstanceNumber."""
    rows = max(1, (len(slices) + 2) // 3)
    sheet = Image.new("RGB", (TILE * 3, TILE * rows), (0, 0, 0))
    label_face = render.font(18)
    for i, z in enumerate(slices):
        tile = Image.fromarray(render_overlay_slice(volume, analysis, z)).resize(
            (TILE, TILE), Image.Resampling.BILINEAR
        )
        ImageDraw.Draw(tile).text((6, 4), f"#{numbers.number(z)}", fill=WHITE, font=label_face)
        sheet.paste(tile, ((i % 3) * TILE, (i // 3) * TILE))
    return sheet


def render_summary(volume: Volume, analysis: Analysis, language: str = "en") -> np.ndarray:
    """The summary page as an (1280, 1024, 3) uint8 RGB array."""
    page = Image.new("RGB", PAGE_SIZE, (0, 0, 0))
    draw = ImageDraw.Draw(page)
    width = PAGE_SIZE[0]
    draw.text((40, 28), text("title", language), fill=WHITE, font=render.font(34))
    y = _figures_table(draw, analysis, language, 100)
    grade_line = f"{text('grade', language)}: {text('grade_prefix', language)}{analysis.grade}"
    draw.text((40, y + 12), grade_line, fill=ACCENT, font=render.font(32))
    y += 60
    face = render.font(26)
    for line in wrap(draw, analysis.prediction(language), face, width - 80)[:3]:
        draw.text((40, y), line, fill=WHITE, font=face)
        y += 34
    y += 8
    numbers = slice_numbers(volume)
    slices = numbers.in_source_order(key_slices(analysis))
    draw.text((40, y), text("key_slices", language), fill=GREY, font=render.font(20))
    y += 30
    if slices:
        page.paste(_montage(volume, analysis, slices, numbers), ((width - 3 * TILE) // 2, y))
    ggo, consolidation = text("ggo", language), text("consolidation", language)
    bottom = PAGE_SIZE[1] - 100
    small = render.font(20)
    draw.rectangle((40, bottom + 6, 58, bottom + 24), fill=render.GGO_COLOUR)
    draw.text((66, bottom + 2), ggo, fill=WHITE, font=small)
    x = 66 + int(draw.textlength(ggo, font=small)) + 30
    draw.rectangle((x, bottom + 6, x + 18, bottom + 24), fill=render.CONSOLIDATION_COLOUR)
    draw.text((x + 26, bottom + 2), consolidation, fill=WHITE, font=small)
    model = f"{text('model', language)}: {analysis.model_name} {analysis.model_version}"
    draw.text((40, bottom + 34), model, fill=GREY, font=small)
    draw.text((40, bottom + 62), text("disclaimer", language), fill=ACCENT, font=render.font(24))
    return np.asarray(page, dtype=np.uint8)


def build_summary(
    volume: Volume,
    analysis: Analysis,
    *,
    language: str = "en",
    institution: str | None = None,
    now: datetime | None = None,
) -> pydicom.Dataset:
    """The summary page as one Secondary Capture RGB image in the input study."""
    ds = secondary_capture(
        volume,
        analysis,
        kind="summary",
        index=0,
        series_number=SUMMARY_SERIES_NUMBER,
        description=series_description("summary", analysis),
        institution=institution,
        now=now or datetime.now(),
    )
    ds.DerivationDescription = "Summary of the PulmoGate lung lesion analysis"
    set_rgb_pixels(ds, render_summary(volume, analysis, language))
    return ds
