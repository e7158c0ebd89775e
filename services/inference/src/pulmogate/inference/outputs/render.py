"""Vectorised rendering helpers: lung window, lesion colours, contours and small text patches."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LUNG_WINDOW = (1500.0, -600.0)  # width, level in HU
GGO_COLOUR = (255, 220, 0)  # yellow
CONSOLIDATION_COLOUR = (255, 40, 40)  # red
FILL_ALPHA = 96  # of 256: translucent fill, anatomy stays visible
FONT_PATHS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
)
LESION_COLOURS = {1: GGO_COLOUR, 2: CONSOLIDATION_COLOUR}

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=4)
def _window_lut(width: float, level: float) -> np.ndarray:
    """A 65536-entry uint8 table indexed by int16 HU reinterpreted as uint16."""
    hu = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.float32)
    low = level - width / 2
    return np.clip((hu - low) * (255.0 / width), 0, 255).astype(np.uint8)


def window(
    hu: np.ndarray, width: float = LUNG_WINDOW[0], level: float = LUNG_WINDOW[1]
) -> np.ndarray:
    """Map int16 HU to uint8 grey through a window (one table look-up per voxel)."""
    lut = _window_lut(float(width), float(level))
    return lut[np.ascontiguousarray(hu, dtype=np.int16).view(np.uint16)]


def boundary(mask: np.ndarray) -> np.ndarray:
    """The inner 4-connected contour of a 2-D boolean mask."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


@lru_cache(maxsize=1)
def _lesion_lut() -> np.ndarray:
    """A (5 * 256, 3) uint8 table indexed by state * 256 + grey, where state is 0 (no
    lesion), 1 or 2 (ground-glass or consolidation fill) or 3 or 4 (their contours)."""
    grey = np.arange(256, dtype=np.uint16)
    rows: list[np.ndarray] = [np.repeat(grey[:, None], 3, axis=1)]
    for colour in LESION_COLOURS.values():
        tint = np.asarray(colour, np.uint16) * FILL_ALPHA
        rows.append((grey[:, None] * (256 - FILL_ALPHA) + tint) >> 8)
    for colour in LESION_COLOURS.values():
        rows.append(np.tile(np.asarray(colour, np.uint16), (256, 1)))
    return np.concatenate(rows).astype(np.uint8)


def lesion_slice(grey: np.ndarray, lesions: np.ndarray) -> np.ndarray:
    """An RGB slice: grey anatomy, lesions as translucent fill with an opaque contour.

    One table look-up per pixel: each lesion colour blended over the grey at ``FILL_ALPHA``
    out of 256, and an opaque contour on top."""
    state = lesions.astype(np.uint16)
    for label in LESION_COLOURS:
        mask = lesions == label
        if mask.any():
            state[boundary(mask)] = label + len(LESION_COLOURS)
    return _lesion_lut()[(state << 8) | grey]


@lru_cache(maxsize=16)
def font(size: int) -> Font:
    """DejaVuSans at ``size`` px (Cyrillic-capable), or PIL's default font if it is missing."""
    for path in FONT_PATHS:
        if path.exists():
            return ImageFont.truetype(str(path), size)
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def text_mask(lines: list[str], size: int, width: int) -> np.ndarray:
    """A float32 (h, width) coverage mask of ``lines`` drawn left-aligned, 0..1."""
    face = font(size)
    line_height = int(size * 1.3)
    image = Image.new("L", (width, line_height * len(lines) + 2), 0)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((2, 1 + row * line_height), line, fill=255, font=face)
    return np.asarray(image, dtype=np.float32) / 255.0


def stamp(
    rgb: np.ndarray,
    coverage: np.ndarray,
    top: int,
    left: int = 0,
    colour: tuple[int, int, int] = (255, 255, 255),
    shade: float = 0.45,
) -> None:
    """Darken a band of ``rgb`` and draw text coverage on it in ``colour``, in place, clipped."""
    h = min(coverage.shape[0], rgb.shape[0] - top)
    w = min(coverage.shape[1], rgb.shape[1] - left)
    if h <= 0 or w <= 0:
        return
    region = rgb[top : top + h, left : left + w].astype(np.float32) * shade
    alpha = coverage[:h, :w, None]
    region = region * (1 - alpha) + np.asarray(colour, np.float32) * alpha
    rgb[top : top + h, left : left + w] = region.astype(np.uint8)


def legend(language_texts: tuple[str, str], size: int, width: int) -> np.ndarray:
    """An RGB legend band: colour swatches for ground-glass and consolidation with their names."""
    face = font(size)
    line_height = int(size * 1.3)
    image = Image.new("RGB", (width, line_height * 2 + 2), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    for row, (name, colour) in enumerate(zip(language_texts, LESION_COLOURS.values(), strict=True)):
        y = 1 + row * line_height
        draw.rectangle((2, y + 2, 2 + size, y + size), fill=colour)
        draw.text((size + 8, y), name, fill=(255, 255, 255), font=face)
    return np.asarray(image, dtype=np.uint8)


def coloured_line(
    parts: list[tuple[str, tuple[int, int, int]]], size: int, width: int
) -> np.ndarray:
    """An RGB band with one line of text whose parts are drawn in their own colours."""
    face = font(size)
    image = Image.new("RGB", (width, int(size * 1.3) + 2), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    x = 2.0
    for part, colour in parts:
        draw.text((x, 1), part, fill=colour, font=face)
        x += draw.textlength(part + "  ", font=face)
    return np.asarray(image, dtype=np.uint8)


def paste_opaque(rgb: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    """Paste the non-black pixels of an RGB patch onto ``rgb`` over a darkened band, clipped."""
    h = min(patch.shape[0], rgb.shape[0] - top)
    w = min(patch.shape[1], rgb.shape[1] - left)
    if h <= 0 or w <= 0:
        return
    region = rgb[top : top + h, left : left + w]
    ink = patch[:h, :w].any(axis=2)
    region[:] = (region.astype(np.uint16) * 115 >> 8).astype(np.uint8)
    region[ink] = patch[:h, :w][ink]
