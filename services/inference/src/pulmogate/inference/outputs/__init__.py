"""DICOM outputs of an analysis: overlay series, summary page, SR measurement report and SEG."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pydicom

if TYPE_CHECKING:
    from pulmogate.inference.analysis import Analysis
    from pulmogate.inference.volume import Volume

log = logging.getLogger(__name__)
KINDS = ("overlay", "summary", "sr", "seg")
LANGUAGES = ("en", "ru")


@dataclass(frozen=True)
class OutputObject:
    """One DICOM object to send back: its kind and its dataset."""

    kind: str  # "overlay" | "summary" | "sr" | "seg"
    dataset: pydicom.Dataset


def build_outputs(
    volume: Volume, analysis: Analysis, *, language: str = "en", institution: str | None = None
) -> list[OutputObject]:
    """Build the overlay slices, summary page, SR and SEG for one analysed series."""
    from pulmogate.inference.outputs.overlay import build_overlay
    from pulmogate.inference.outputs.seg import build_seg
    from pulmogate.inference.outputs.sr import build_sr
    from pulmogate.inference.outputs.summary import build_summary

    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, not {language!r}")
    started = time.perf_counter()
    now = datetime.now()
    overlay = build_overlay(volume, analysis, language=language, institution=institution, now=now)
    summary = build_summary(volume, analysis, language=language, institution=institution, now=now)
    seg = build_seg(volume, analysis, institution=institution)
    sr = build_sr(volume, analysis, seg, institution=institution, now=now)
    objects = [OutputObject("overlay", ds) for ds in overlay]
    objects.append(OutputObject("summary", summary))
    objects.append(OutputObject("sr", sr))
    if seg is not None:
        objects.append(OutputObject("seg", seg.dataset))
    log.info(
        "built %d output objects for series %s in %.2f s",
        len(objects),
        volume.series_uid,
        time.perf_counter() - started,
    )
    return objects


__all__ = ["KINDS", "LANGUAGES", "OutputObject", "build_outputs"]
