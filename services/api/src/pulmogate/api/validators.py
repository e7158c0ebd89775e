"""Field checks shared by the create and update schemas (each raises a readable ValueError)."""

import ipaddress
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from pulmogate.common.rule_regex import shape_refusal

AE_TITLE_MAX = 16


def check_regex(value: str) -> str:
    """A description filter must compile and must not nest repeats (``(a+)+``).

    The slower probe for exponential filters runs in the route, off the event loop
    (``crud.rules.check_filter_speed``).
    """
    reason = shape_refusal(value)
    if reason is not None:
        raise ValueError(reason)
    return value


def check_ip_or_cidr(value: str) -> str:
    """A source address is one IP address or a network in CIDR notation."""
    value = value.strip()
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=True)
        else:
            ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValueError(f"not an IP address or CIDR network: {exc}") from exc
    return value


def check_ae_title(value: str) -> str:
    """DICOM AE title: 1..16 characters of the default repertoire, no backslash, not blank."""
    value = value.strip(" ")
    if not value:
        raise ValueError("AE title must not be empty or all spaces")
    if len(value) > AE_TITLE_MAX:
        raise ValueError(f"AE title must be at most {AE_TITLE_MAX} characters, got {len(value)}")
    for ch in value:
        if ch == "\\":
            raise ValueError("AE title must not contain a backslash")
        if not " " <= ch <= "~":
            raise ValueError(f"AE title must not contain the character {ch!r}")
    return value


def check_no_nul(value: str) -> str:
    """Text the database keeps has no NUL character (PostgreSQL cannot store one)."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (\\x00)")
    return value


def _strip(value: object) -> object:
    """Surrounding whitespace is never meaningful in a name."""
    return value.strip() if isinstance(value, str) else value


def _blank_to_none(value: object) -> object:
    """An empty optional string means 'any'."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


DescriptionFilter = Annotated[
    str, Field(max_length=500), AfterValidator(check_no_nul), AfterValidator(check_regex)
]
SourceIp = Annotated[
    str | None, BeforeValidator(_blank_to_none), AfterValidator(lambda v: v and check_ip_or_cidr(v))
]
AETitle = Annotated[str, AfterValidator(check_ae_title)]
OptionalAETitle = Annotated[
    str | None, BeforeValidator(_blank_to_none), AfterValidator(lambda v: v and check_ae_title(v))
]
Port = Annotated[int, Field(ge=1, le=65535)]
Name = Annotated[
    str, BeforeValidator(_strip), Field(min_length=1, max_length=100), AfterValidator(check_no_nul)
]
Host = Annotated[
    str, Field(min_length=1, max_length=255, pattern=r"^[^\s/\\]+$"), AfterValidator(check_no_nul)
]
Text = Annotated[str, AfterValidator(check_no_nul)]
