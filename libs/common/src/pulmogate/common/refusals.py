"""Refusals: a rejected input carries a stable code and a sentence a user can read."""

from enum import StrEnum


class RefusalCode(StrEnum):
    """Why an input was not analysed."""

    NOT_CT = "NOT_CT"
    SLICE_TOO_THICK = "SLICE_TOO_THICK"
    TOO_FEW_SLICES = "TOO_FEW_SLICES"
    INCONSISTENT_GEOMETRY = "INCONSISTENT_GEOMETRY"
    MISSING_PIXEL_DATA = "MISSING_PIXEL_DATA"
    DUPLICATE_POSITIONS = "DUPLICATE_POSITIONS"
    SLICE_GAP = "SLICE_GAP"
    NOT_AXIAL = "NOT_AXIAL"
    GANTRY_TILT = "GANTRY_TILT"
    TOO_LARGE = "TOO_LARGE"
    UNREADABLE = "UNREADABLE"
    UNREADABLE_HEADER = "UNREADABLE_HEADER"
    UNSUPPORTED_PIXEL_DATA = "UNSUPPORTED_PIXEL_DATA"
    MIXED_SERIES = "MIXED_SERIES"
    NO_LUNGS = "NO_LUNGS"
    NO_MATCHING_RULE = "NO_MATCHING_RULE"
    NO_LICENSE = "NO_LICENSE"
    LICENSE_EXPIRED = "LICENSE_EXPIRED"
    LICENSE_DAILY_LIMIT = "LICENSE_DAILY_LIMIT"
    ANALYSIS_ERROR = "ANALYSIS_ERROR"


class Refusal(Exception):
    """An input that PulmoGate declines to analyse, with the reason."""

    def __init__(self, code: RefusalCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def mm(value: float) -> str:
    """Millimetres as radiologists write them: 5.0, 2.5, 0.625 (to the micrometre)."""
    value = round(value, 3)
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"


# The refusals both the router (on the instance rows) and inference (on the files) make:
# one sentence for each, whichever service finds it.


def not_ct(modality: str) -> Refusal:
    """A series of another modality."""
    return Refusal(RefusalCode.NOT_CT, f"modality {modality} is not CT")


def mixed_modalities(described: str) -> Refusal:
    """A series whose slices name several modalities (``described``: each with its count)."""
    return Refusal(RefusalCode.NOT_CT, f"series mixes modalities {described}; not CT")


def not_ct_storage(sop_class_uid: str) -> Refusal:
    """Slices without a Modality whose SOP class is not a CT image."""
    return Refusal(RefusalCode.NOT_CT, f"SOP class {sop_class_uid} is not CT Image Storage")


def slice_too_thick(
    thickness_mm: float, limit_mm: float, *, measure: str = "slice thickness"
) -> Refusal:
    """Slices thicker than the limit (``measure``: what was measured, e.g. the spacing)."""
    return Refusal(
        RefusalCode.SLICE_TOO_THICK,
        f"{measure} {mm(thickness_mm)} mm exceeds the {mm(limit_mm)} mm limit",
    )


def too_few_slices(count: int, minimum: int) -> Refusal:
    """Too few slices to cover the chest."""
    return Refusal(
        RefusalCode.TOO_FEW_SLICES,
        f"{count} slices, at least {minimum} are needed",
    )


def no_slices() -> Refusal:
    """A series with no slice at all to read."""
    return Refusal(RefusalCode.TOO_FEW_SLICES, "the series has no slices")
