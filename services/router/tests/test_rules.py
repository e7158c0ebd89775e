"""Rule matching: IP/CIDR, AE title, regex description filters, priority and disabled rules."""

import time
from dataclasses import dataclass

from pulmogate.common.routing import (
    SeriesSource,
    choose,
    describe_no_match,
    first_match,
    mismatches,
    rule_matches,
)


@dataclass
class Rule:
    id: int
    name: str = "rule"
    enabled: bool = True
    priority: int = 100
    source_ip: str | None = None
    source_ae_title: str | None = None
    study_description_filter: str = ".*"
    series_description_filter: str = ".*"


CT = SeriesSource("10.0.0.5", "CT_SCANNER", "CT CHEST", "AX 1mm LUNG")


def test_a_rule_with_no_conditions_matches_any_series() -> None:
    assert rule_matches(Rule(1), CT)
    assert rule_matches(Rule(1), SeriesSource("", "", "", ""))


def test_source_ip_matches_an_exact_address_or_a_cidr_network() -> None:
    assert rule_matches(Rule(1, source_ip="10.0.0.5"), CT)
    assert rule_matches(Rule(1, source_ip="10.0.0.0/24"), CT)
    assert not rule_matches(Rule(1, source_ip="10.0.0.6"), CT)
    assert not rule_matches(Rule(1, source_ip="192.168.0.0/16"), CT)


def test_ipv4_mapped_ipv6_peer_matches_an_ipv4_rule() -> None:
    assert rule_matches(Rule(1, source_ip="10.0.0.0/8"), SeriesSource("::ffff:10.0.0.5", "X"))


def test_an_unparseable_source_ip_never_matches() -> None:
    assert not rule_matches(Rule(1, source_ip="not-an-ip"), CT)
    assert not rule_matches(Rule(1, source_ip="10.0.0.0/8"), SeriesSource("garbage", "X"))


def test_ae_title_is_compared_exactly_ignoring_padding() -> None:
    assert rule_matches(Rule(1, source_ae_title="CT_SCANNER"), CT)
    assert rule_matches(Rule(1, source_ae_title="CT_SCANNER "), CT)
    assert not rule_matches(Rule(1, source_ae_title="ct_scanner"), CT)
    assert not rule_matches(Rule(1, source_ae_title="MR_SCANNER"), CT)


def test_description_filters_use_regex_search_semantics() -> None:
    assert rule_matches(Rule(1, study_description_filter="CHEST"), CT)
    assert rule_matches(Rule(1, series_description_filter=r"\d+mm"), CT)
    assert not rule_matches(Rule(1, study_description_filter="^CHEST$"), CT)
    assert not rule_matches(Rule(1, study_description_filter="chest"), CT)
    assert rule_matches(Rule(1, study_description_filter="(?i)chest"), CT)
    assert rule_matches(Rule(1, study_description_filter=""), CT)


def test_an_invalid_regex_never_matches() -> None:
    assert not rule_matches(Rule(1, study_description_filter="(unclosed"), CT)


def test_disabled_rules_never_match() -> None:
    assert not rule_matches(Rule(1, enabled=False), CT)
    assert first_match([Rule(1, enabled=False), Rule(2, priority=500)], CT).id == 2  # type: ignore[union-attr]


def test_first_match_is_by_priority_then_id() -> None:
    rules = [Rule(3, priority=10), Rule(1, priority=20), Rule(2, priority=10)]
    assert first_match(rules, CT).id == 2  # type: ignore[union-attr]


def test_a_non_matching_higher_priority_rule_is_skipped() -> None:
    rules = [Rule(1, priority=1, source_ae_title="OTHER"), Rule(2, priority=2)]
    assert first_match(rules, CT).id == 2  # type: ignore[union-attr]


def test_no_match_returns_none_and_the_reason_names_the_attributes() -> None:
    assert first_match([Rule(1, source_ip="192.168.1.1")], CT) is None
    reason = describe_no_match(CT)
    assert reason == (
        "no enabled rule matches source 10.0.0.5 / AE CT_SCANNER, "
        "study 'CT CHEST', series 'AX 1mm LUNG'"
    )


def test_mismatches_lists_each_failing_condition() -> None:
    rule = Rule(1, source_ip="192.168.0.0/16", series_description_filter="^HEAD")
    assert mismatches(rule, CT) == [
        "source 10.0.0.5 not in 192.168.0.0/16",
        "series 'AX 1mm LUNG' does not match '^HEAD'",
    ]


def test_a_filter_that_runs_out_of_time_does_not_match_and_the_reason_says_so() -> None:
    slow = Rule(1, name="slow", series_description_filter="^(a|aa)+$")
    fallback = Rule(2, name="fallback", priority=200)
    source = SeriesSource("10.0.0.5", "CT", "", "a" * 40 + "b")

    start = time.monotonic()
    winner, _ = choose([slow, fallback], source, timeout_s=0.05)
    nothing, why = choose([slow], source, timeout_s=0.05)

    assert time.monotonic() - start < 1.0  # stdlib re: hours on this input
    assert winner is fallback and nothing is None
    assert "rule 'slow': series description filter: REGEX_TIMEOUT: filter '^(a|aa)+$'" in why
