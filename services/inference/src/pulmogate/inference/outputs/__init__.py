"""DICOM outputs of an analysis: overlay series, summary page, SR measurement report and SEG."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pydicom

from pulmogate.common.dicom.quiet import keep_values_out_of_logs

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


def iter_outputs(
    volume: Volume, analysis: Analysis, *, language: str = "en", institution: str | None = None
) -> Iterator[OutputObject]:
    """The outputs one at a time (overlay slices, summary, SR, SEG), the same objects in the
    same order as ``build_outputs``: a caller that writes each and drops it holds one overlay
    image in memory instead of all of them (907 slices of RGB for a 1000-slice series)."""
    from pulmogate.inference.outputs.overlay import iter_overlay
    from pulmogate.inference.outputs.seg import build_seg
    from pulmogate.inference.outputs.sr import build_sr
    from pulmogate.inference.outputs.summary import build_summary

    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, not {language!r}")
    keep_values_out_of_logs()
    now = datetime.now()
    for ds in iter_overlay(volume, analysis, language=language, institution=institution, now=now):
        yield OutputObject("overlay", ds)
    yield OutputObject(
        "summary",
        build_summary(volume, analysis, language=language, institution=institution, now=now),
    )
    seg = build_seg(volume, analysis, institution=institution)
    yield OutputObject(
        "sr",
        build_sr(volume, analysis, seg, language=language, institution=institution, now=now),
    )
    if seg is not None:
        yield OutputObject("seg", seg.dataset)


def input_notes(volume: Volume) -> list[str]:
    """What the outputs carry differently from the input, and why (for the job log): values
    derived by the loader and patient or study values that could not be copied. Names
    attributes, never their values."""
    from pulmogate.inference.outputs.attributes import patient_study

    return [*volume.notes, *patient_study(volume.headers[0]).notes]


def build_outputs(
    volume: Volume, analysis: Analysis, *, language: str = "en", institution: str | None = None
) -> list[OutputObject]:
    """Build the overlay slices, summary page, SR and SEG for one analysed series."""
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, not {language!r}")
    started = time.perf_counter()
    objects = list(iter_outputs(volume, analysis, language=language, institution=institution))
    log.info(
        "built %d output objects for series %s in %.2f s",
        len(objects),
        volume.series_uid,
        time.perf_counter() - started,
    )
    return objects


__all__ = ["KINDS", "LANGUAGES", "OutputObject", "build_outputs", "input_notes", "iter_outputs"]
