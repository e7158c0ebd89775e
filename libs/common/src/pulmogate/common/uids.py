"""Deterministic DICOM UIDs, so a redelivered job produces the same objects."""

import hashlib
import re

UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def derive_uid(*parts: str | int) -> str:
    """Return a 2.25 UID derived from ``parts`` (same parts, same UID)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def is_valid_uid(value: str) -> bool:
    """True when ``value`` is a syntactically valid DICOM UID (safe as a file name)."""
    return 0 < len(value) <= 64 and UID_PATTERN.match(value) is not None
