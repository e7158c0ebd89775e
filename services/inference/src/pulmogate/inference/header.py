"""Read single attributes of a slice without decoding the others; a bad value never raises.

pydicom converts an element only when it is accessed. Walking a whole dataset converts
every element, private ones included, and one whose value does not fit the VR pydicom
guesses for it (Implicit VR files with a vendor's private tag) stops the whole read.
These helpers touch only the element asked for, and turn a value that cannot be
converted into ``BadValue``, which names the attribute and never quotes the value.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.multival import MultiValue

from pulmogate.common.refusals import Refusal, RefusalCode

T = TypeVar("T")


class BadValue(ValueError):
    """An attribute whose value cannot be read as what it should be (the value is not kept)."""

    def __init__(self, keyword: str, problem: str) -> None:
        super().__init__(f"{keyword} {problem}")
        self.keyword = keyword
        self.problem = problem


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return int(tag)


def value(ds: pydicom.Dataset, keyword: str) -> Any:
    """The converted value of ``keyword``; None when absent or empty; BadValue if unreadable."""
    tag = _tag(keyword)
    if tag not in ds:
        return None
    try:
        converted = ds[tag].value
    except Exception as error:  # any conversion failure: the element is unreadable
        raise BadValue(keyword, "cannot be decoded") from error
    if converted is None or converted == "" or converted == b"":
        return None
    if isinstance(converted, (MultiValue, list)) and len(converted) == 0:
        return None
    return converted


def values(ds: pydicom.Dataset, keyword: str) -> list[Any]:
    """The values of ``keyword`` as a list (empty when absent)."""
    found = value(ds, keyword)
    if found is None:
        return []
    if isinstance(found, (MultiValue, list, tuple)):
        return list(found)
    return [found]


def number(ds: pydicom.Dataset, keyword: str) -> float | None:
    """A single finite number, None when absent or empty, BadValue otherwise."""
    found = values(ds, keyword)
    if not found:
        return None
    if len(found) != 1:
        raise BadValue(keyword, f"has {len(found)} values, one is expected")
    try:
        result = float(found[0])
    except (TypeError, ValueError, OverflowError) as error:
        raise BadValue(keyword, "is not a number") from error
    if not math.isfinite(result):
        raise BadValue(keyword, "is not a finite number")
    return result


def numbers(ds: pydicom.Dataset, keyword: str, count: int) -> list[float] | None:
    """Exactly ``count`` finite numbers, None when absent or empty, BadValue otherwise."""
    found = values(ds, keyword)
    if not found:
        return None
    if len(found) != count:
        raise BadValue(keyword, f"has {len(found)} values, {count} are expected")
    try:
        result = [float(v) for v in found]
    except (TypeError, ValueError, OverflowError) as error:
        raise BadValue(keyword, "is not a list of numbers") from error
    if not all(math.isfinite(v) for v in result):
        raise BadValue(keyword, "holds a value that is not a finite number")
    return result


def integer(ds: pydicom.Dataset, keyword: str) -> int | None:
    """A single integer, None when absent or empty, BadValue otherwise."""
    found = number(ds, keyword)
    if found is None:
        return None
    if not found.is_integer():
        raise BadValue(keyword, "is not a whole number")
    return int(found)


def text(ds: pydicom.Dataset, keyword: str) -> str | None:
    """A single text value (stripped), None when absent or empty, BadValue otherwise."""
    found = values(ds, keyword)
    if not found:
        return None
    if len(found) != 1:
        raise BadValue(keyword, f"has {len(found)} values, one is expected")
    if isinstance(found[0], bytes):
        raise BadValue(keyword, "is stored as bytes, not text")
    result = str(found[0]).strip(" \x00")
    return result or None


def copy_elements(ds: pydicom.Dataset, keywords: Iterable[str]) -> pydicom.Dataset:
    """A new dataset with the elements of ``keywords`` that ``ds`` has, copied undecoded."""
    header = pydicom.Dataset()
    for keyword in keywords:
        tag = _tag(keyword)
        if tag in ds:
            header[tag] = ds.get_item(tag)
    return header


def label(ds: pydicom.Dataset) -> str:
    """A short, patient-free name for a slice in messages: instance number, else file name."""
    with contextlib.suppress(BadValue):
        found = integer(ds, "InstanceNumber")
        if found is not None:
            return str(found)
    filename = getattr(ds, "filename", None)
    return Path(filename).name if isinstance(filename, str) and filename else "?"


def checked(read: Callable[..., T], ds: pydicom.Dataset, keyword: str, *args: int) -> T:
    """``read(ds, keyword, *args)``; a value that cannot be read refuses the series, naming
    the slice and the attribute (UNREADABLE_HEADER)."""
    try:
        return read(ds, keyword, *args)
    except BadValue as error:
        raise Refusal(
            RefusalCode.UNREADABLE_HEADER,
            f"slice {label(ds)}: {error.keyword} {error.problem}; "
            "correct it at the modality or PACS and send the series again",
        ) from error


def meta_text(ds: pydicom.Dataset, keyword: str) -> str | None:
    """A value of the slice's file meta information, None without one (never raises)."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return None
    with contextlib.suppress(BadValue):
        return text(meta, keyword)
    return None
