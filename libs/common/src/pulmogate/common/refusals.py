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
