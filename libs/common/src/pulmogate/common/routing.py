"""Routing-rule matching, pure (no DB): the router routes with it, the API's rule tester reuses it.

Semantics:
- only enabled rules take part; the first match by (priority, id) wins (lower first);
- ``source_ip`` None/empty means any; otherwise one IP address or a CIDR network;
- ``source_ae_title`` None/empty means any; otherwise the calling AE title, compared exactly
  (AE titles are case-sensitive in DICOM; surrounding spaces are ignored);
- the description filters are Python regular expressions applied with ``re.search``
  semantics: a filter matches when it is found anywhere in the description (anchor with
  ``^…$`` for a whole-value match, prefix ``(?i)`` for case-insensitive). An empty filter
  matches anything; a filter that does not compile never matches. They run on the ``regex``
  engine with a time limit (``rule_regex``): a filter that runs out of time does not match,
  and the reason says so (REGEX_TIMEOUT). Callers run matching in a worker thread.
"""

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import regex

from pulmogate.common.rule_regex import DEFAULT_TIMEOUT_S, RegexTimeout, search


class RuleLike(Protocol):
    """The fields of a routing rule the matcher reads (a ``RoutingRule`` row fits)."""

    id: int
    name: str
    enabled: bool
    priority: int
    source_ip: str | None
    source_ae_title: str | None
    study_description_filter: str
    series_description_filter: str


R = TypeVar("R", bound=RuleLike)


@dataclass(frozen=True)
class SeriesSource:
    """What a rule is matched against: who sent the series and how it is described."""

    peer_ip: str
    calling_ae: str
    study_description: str = ""
    series_description: str = ""


def ip_matches(pattern: str | None, peer_ip: str) -> bool:
    """True when ``peer_ip`` is ``pattern`` (an address) or inside it (a CIDR network)."""
    if not pattern or not pattern.strip():
        return True
    try:
        address = ipaddress.ip_address(peer_ip.strip())
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        network = ipaddress.ip_network(pattern.strip(), strict=False)
    except ValueError:
        return False
    return address.version == network.version and address in network


def ae_matches(pattern: str | None, calling_ae: str) -> bool:
    """True when no AE title is required or the calling AE title equals it."""
    if not pattern or not pattern.strip():
        return True
    return pattern.strip() == calling_ae.strip()


@dataclass
class RuleSnapshot:
    """A rule's matching fields as plain values, safe to hand to a worker thread."""

    id: int
    name: str
    enabled: bool
    priority: int
    source_ip: str | None
    source_ae_title: str | None
    study_description_filter: str
    series_description_filter: str

    @classmethod
    def of(cls, rule: RuleLike) -> "RuleSnapshot":
        """Copy the fields of ``rule`` (an ORM row is read here, on its own thread)."""
        return cls(
            rule.id,
            rule.name,
            bool(rule.enabled),
            rule.priority,
            rule.source_ip,
            rule.source_ae_title,
            rule.study_description_filter,
            rule.series_description_filter,
        )


def description_matches(
    pattern: str | None, description: str, timeout_s: float = DEFAULT_TIMEOUT_S
) -> bool:
    """``re.search`` semantics; an empty filter matches, an invalid one never does.

    Raises ``RegexTimeout`` when the filter runs out of ``timeout_s``.
    """
    if not pattern:
        return True
    try:
        return search(pattern, description or "", timeout_s)
    except (regex.error, RecursionError, OverflowError, ValueError):
        return False


def mismatches(
    rule: RuleLike, source: SeriesSource, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[str]:
    """The attributes of ``source`` that ``rule`` does not accept (empty list = it matches)."""
    failed: list[str] = []
    if not ip_matches(rule.source_ip, source.peer_ip):
        failed.append(f"source {source.peer_ip} not in {rule.source_ip}")
    if not ae_matches(rule.source_ae_title, source.calling_ae):
        failed.append(f"AE {source.calling_ae} is not {rule.source_ae_title}")
    filters = (
        ("study", rule.study_description_filter, source.study_description),
        ("series", rule.series_description_filter, source.series_description),
    )
    for label, pattern, description in filters:
        try:
            matched = description_matches(pattern, description, timeout_s)
        except RegexTimeout as exc:
            failed.append(f"{label} description filter: {exc}")
            continue
        if not matched:
            failed.append(f"{label} {description!r} does not match {pattern!r}")
    return failed


def rule_matches(
    rule: RuleLike, source: SeriesSource, timeout_s: float = DEFAULT_TIMEOUT_S
) -> bool:
    """True when ``rule`` is enabled and accepts every attribute of ``source``."""
    return bool(rule.enabled) and not mismatches(rule, source, timeout_s)


def ordered(rules: Iterable[R]) -> list[R]:
    """Rules in matching order: priority, then id."""
    return sorted(rules, key=lambda r: (r.priority, r.id))


def first_match(
    rules: Iterable[R], source: SeriesSource, timeout_s: float = DEFAULT_TIMEOUT_S
) -> R | None:
    """The enabled rule that routes ``source``: the first match by (priority, id), or None."""
    return choose(list(rules), source, timeout_s)[0]


def choose(
    rules: Sequence[R], source: SeriesSource, timeout_s: float = DEFAULT_TIMEOUT_S
) -> tuple[R | None, str]:
    """The winning rule, or None and the sentence saying why (naming any filter timeout)."""
    timeouts: list[str] = []
    for rule in ordered(rules):
        if not rule.enabled:
            continue
        failed = mismatches(rule, source, timeout_s)
        if not failed:
            return rule, ""
        timeouts += [f"rule {rule.name!r}: {f}" for f in failed if "REGEX_TIMEOUT" in f]
    return None, "; ".join([describe_no_match(source), *timeouts])


def describe_no_match(source: SeriesSource) -> str:
    """A sentence naming the attributes no rule accepted."""
    return (
        f"no enabled rule matches source {source.peer_ip or '?'} / AE {source.calling_ae or '?'}, "
        f"study {source.study_description!r}, series {source.series_description!r}"
    )
