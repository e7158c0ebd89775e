"""The failure notice: a page and an SR in the study that say no analysis was made, and why.

When a series is refused or its analysis fails under a rule with destinations, the
radiologist would otherwise see nothing at the PACS and could not tell "failed" from
"still running". The notice is a Secondary Capture page titled "PulmoGate: analysis not
performed" with the reason, and a Comprehensive 3D SR whose text impression says the
same, both in the input study with its patient and study attributes copied as every
result copies them (one function, ``copy_patient_study``). UIDs derive from the series,
the reason code and the instance count: the same failure gives the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from PIL import Image, ImageDraw
from pydicom.sr.codedict import codes
from pydicom.valuerep import DA, TM

from pulmogate.common.uids import derive_uid, is_valid_uid
from pulmogate.inference import header as attr
from pulmogate.inference.outputs import OutputObject, render
from pulmogate.inference.outputs import codes as code
from pulmogate.inference.outputs.attributes import (
    MANUFACTURER,
    clean_source,
    gateway_version,
    secondary_capture_of,
    set_rgb_pixels,
)
from pulmogate.inference.outputs.labels import text
from pulmogate.inference.outputs.summary import wrap

NOTICE_SERIES_NUMBER = 9005
NOTICE_SR_SERIES_NUMBER = 9006
NEEDED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
PAGE_SIZE = (1024, 768)  # width, height
WHITE, GREY, ALERT = (255, 255, 255), (170, 170, 170), (255, 150, 90)


@dataclass(frozen=True)
class NoticeFacts:
    """What the notice says: the refusal's code and sentence, and which series it is about."""

    code: str
    reason: str
    series_description: str
    series_number: int | None
    instance_count: int


def _uid(series_uid: str, facts: NoticeFacts, kind: str, index: str | int) -> str:
    return derive_uid("pulmogate-notice", series_uid, facts.code, facts.instance_count, kind, index)


def series_line(facts: NoticeFacts, language: str) -> str:
    """'Series 3 · Lung 1.0 · 148 images' (number and description when known)."""
    parts = [text("notice_series", language)]
    if facts.series_number is not None:
        parts[0] += f" {facts.series_number}"
    if facts.series_description:
        parts.append(facts.series_description)
    parts.append(f"{facts.instance_count} {text('notice_images', language)}")
    return " · ".join(parts)


def render_notice(facts: NoticeFacts, language: str) -> np.ndarray:
    """The notice page as a (768, 1024, 3) uint8 RGB array."""
    page = Image.new("RGB", PAGE_SIZE, (0, 0, 0))
    draw = ImageDraw.Draw(page)
    width = PAGE_SIZE[0] - 80
    draw.rectangle((0, 0, PAGE_SIZE[0], 12), fill=ALERT)
    draw.text((40, 48), text("notice_title", language), fill=ALERT, font=render.font(44))
    y = 130
    draw.text((40, y), series_line(facts, language), fill=WHITE, font=render.font(26))
    y += 60
    draw.text((40, y), f"{text('notice_reason', language)}:", fill=GREY, font=render.font(24))
    y += 38
    face = render.font(28)
    for line in wrap(draw, f"{facts.code}: {facts.reason}", face, width)[:9]:
        draw.text((40, y), line, fill=WHITE, font=face)
        y += 38
    small = render.font(22)
    bottom = PAGE_SIZE[1] - 110
    for k, line in enumerate(wrap(draw, text("notice_footer", language), small, width)[:2]):
        draw.text((40, bottom + 30 * k), line, fill=GREY, font=small)
    draw.text((40, PAGE_SIZE[1] - 44), text("disclaimer", language), fill=GREY, font=small)
    return np.asarray(page, dtype=np.uint8)


def impression(facts: NoticeFacts, language: str) -> str:
    """The SR's text: 'PulmoGate: analysis not performed. Series 3 · … Reason: CODE: …'."""
    return (
        f"{text('notice_title', language)}. {series_line(facts, language)}. "
        f"{text('notice_reason', language)}: {facts.code}: {facts.reason}"
    )


def build_notice_page(
    source: pydicom.Dataset,
    facts: NoticeFacts,
    *,
    language: str,
    institution: str | None,
    now: datetime,
) -> pydicom.Dataset:
    """The notice page: one Secondary Capture image in the study of ``source``."""
    series_uid = str(source.SeriesInstanceUID)
    ds = secondary_capture_of(
        source,
        sop_uid=_uid(series_uid, facts, "notice", 0),
        series_uid=_uid(series_uid, facts, "notice", "series"),
        series_number=NOTICE_SERIES_NUMBER,
        instance_number=1,
        description=text("notice_title", language)[:64],
        software=[gateway_version()],
        institution=institution,
        now=now,
        orientation=None,
    )
    ds.DerivationDescription = "PulmoGate failure notice: no analysis was made"
    set_rgb_pixels(ds, render_notice(facts, language))
    return ds


def build_notice_sr(
    sources: list[pydicom.Dataset],
    facts: NoticeFacts,
    *,
    language: str,
    institution: str | None,
    now: datetime,
) -> pydicom.Dataset:
    """The notice SR: a CT chest report whose one finding is its text impression, the
    reason (no template: TID 1500 needs measurements, and there are none)."""
    source = sources[0]
    series_uid = str(source.SeriesInstanceUID)
    content = hd.sr.ContainerContentItem(name=codes.LN.CTChestReport)
    language_item = hd.sr.CodeContentItem(
        name=codes.DCM.LanguageOfContentItemAndDescendants,
        value=code.LANGUAGES[language],
        relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD,
    )
    said = hd.sr.TextContentItem(
        name=code.IMPRESSION,
        value=impression(facts, language)[:1024],
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    content.ContentSequence = hd.sr.ContentSequence([language_item, said])
    sr = hd.sr.Comprehensive3DSR(
        evidence=[clean_source(source), *sources[1:]],
        content=content,
        series_instance_uid=_uid(series_uid, facts, "noticesr", "series"),
        series_number=NOTICE_SR_SERIES_NUMBER,
        sop_instance_uid=_uid(series_uid, facts, "noticesr", 0),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        institution_name=institution[:64] if institution else None,
    )
    sr.add_new("SoftwareVersions", "LO", [gateway_version()])
    sr.SeriesDescription = text("notice_title", language)[:64]
    sr.ContentDate = DA(now.strftime("%Y%m%d"))
    sr.ContentTime = TM(now.strftime("%H%M%S"))
    return sr


def notice_source(path: Path) -> pydicom.Dataset | None:
    """The header of one stored instance as the results read it (the attributes the loader
    keeps, undecoded), or None when it cannot serve: unreadable, or a UID missing."""
    from pulmogate.inference.volume import KEEP_KEYWORDS

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        header = attr.copy_elements(ds, KEEP_KEYWORDS)
        if "SOPClassUID" not in header:
            sop_class = attr.meta_text(ds, "MediaStorageSOPClassUID")
            if sop_class:
                header.SOPClassUID = sop_class
        uids = [
            attr.text(header, keyword) or ""
            for keyword in (
                "SOPClassUID",
                "SOPInstanceUID",
                "StudyInstanceUID",
                "SeriesInstanceUID",
            )
        ]
    except Exception:  # an instance that cannot be read is left out of the notice
        return None
    return header if all(is_valid_uid(uid) for uid in uids) else None


def build_notice(
    sources: list[pydicom.Dataset],
    facts: NoticeFacts,
    *,
    language: str = "en",
    institution: str | None = None,
    now: datetime | None = None,
) -> list[OutputObject]:
    """The notice page and SR for a series whose headers (one at least) are ``sources``."""
    if not sources:
        raise ValueError("a failure notice needs one readable header of the series")
    now = now or datetime.now()
    page = build_notice_page(sources[0], facts, language=language, institution=institution, now=now)
    sr = build_notice_sr(sources, facts, language=language, institution=institution, now=now)
    return [OutputObject("notice", page), OutputObject("noticesr", sr)]
