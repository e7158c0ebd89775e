"""Check a value copied from the input against its VR; say what is wrong without quoting it."""

from __future__ import annotations

import re
from datetime import datetime

TIME = re.compile(r"(?:[01]\d|2[0-3])(?:[0-5]\d(?:(?:[0-5]\d|60)(?:\.\d{1,6})?)?)?")
CODE_STRING = re.compile(r"[A-Z0-9 _]*")
AGE = re.compile(r"\d{3}[DWMY]")
MAX_CHARACTERS = {"LO": 64, "SH": 16, "CS": 16}
PN_GROUP_CHARACTERS = 64


def _control_characters(value: str) -> bool:
    """True when ``value`` holds NUL or another control character (none is allowed here)."""
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


def _date_problem(value: str) -> str | None:
    if len(value) == 8 and value.isdigit():
        try:
            datetime.strptime(value, "%Y%m%d")
            return None
        except ValueError:
            pass
    return "is not a valid date (DA)"


def _name_problem(value: str) -> str | None:
    groups = value.split("=")
    if len(groups) > 3:
        return "has more than three component groups (PN)"
    if any(len(group.split("^")) > 5 for group in groups):
        return "has more than five name components (PN)"
    if any(len(group) > PN_GROUP_CHARACTERS for group in groups):
        return f"is longer than {PN_GROUP_CHARACTERS} characters (PN)"
    return None


def problem(vr: str, value: str, allowed: tuple[str, ...] = ()) -> str | None:
    """What makes ``value`` unfit for ``vr`` (e.g. "is not a valid date (DA)"), or None.

    ``allowed`` lists the enumerated values of a CS (PatientSex: M, F, O). The answer names
    the rule broken and never contains the value: it goes into job logs.
    """
    if "\ufffd" in value:
        return "cannot be decoded in the character set the input declares"
    if _control_characters(value):
        return "contains control characters (such as NUL)"
    if vr == "DA":
        return _date_problem(value)
    if vr == "TM":
        return None if TIME.fullmatch(value) else "is not a valid time (TM)"
    if vr == "PN":
        return _name_problem(value)
    if vr == "AS":
        return None if AGE.fullmatch(value) else "is not a valid age (AS: nnnD, nnnW, nnnM or nnnY)"
    limit = MAX_CHARACTERS.get(vr)
    if limit is not None and len(value) > limit:
        return f"is longer than {limit} characters ({vr})"
    if vr == "CS" and not CODE_STRING.fullmatch(value):
        return "is not a valid code string (CS)"
    if allowed and value not in allowed:
        return f"is not one of the defined terms {', '.join(allowed)}"
    return None
