"""POST /api/v1/rules/test: the winning rule and each rule's reasons, CIDR sources included."""

import time

import httpx

from pulmogate.common.db.models import RoutingRule
from pulmogate.common.runtime import Context


async def _rule(client: httpx.AsyncClient, **fields: object) -> int:
    response = await client.post("/api/v1/rules", json=fields)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def test_a_cidr_source_matches_addresses_inside_it_and_the_tester_says_why(
    client: httpx.AsyncClient,
) -> None:
    ward = await _rule(client, name="ward", priority=10, source_ip="10.20.0.0/16")
    await _rule(client, name="ct1 only", priority=5, source_ae_title="CT1")
    await _rule(client, name="off", priority=1, enabled=False, study_description_filter="(?i)chest")

    inside = await client.post(
        "/api/v1/rules/test",
        json={"source_ip": "10.20.3.4", "calling_ae": "CT9", "study_description": "CT CHEST"},
    )
    outside = await client.post(
        "/api/v1/rules/test", json={"source_ip": "10.21.0.1", "calling_ae": "CT9"}
    )

    assert inside.status_code == 200, inside.text
    body = inside.json()
    assert body["matched_rule_id"] == ward and body["matched_rule_name"] == "ward"
    verdicts = {v["name"]: v for v in body["rules"]}
    assert [v["name"] for v in body["rules"]] == ["off", "ct1 only", "ward"]
    assert verdicts["off"]["reasons"][0] == "disabled" and not verdicts["off"]["matches"]
    assert verdicts["ct1 only"]["reasons"] == ["AE CT9 is not CT1"]
    assert verdicts["ward"]["matches"] and verdicts["ward"]["reasons"] == []
    assert outside.json()["matched_rule_id"] is None
    assert "source 10.21.0.1 not in 10.20.0.0/16" in {
        r for v in outside.json()["rules"] for r in v["reasons"]
    }
    assert outside.json()["explanation"].startswith("no enabled rule matches source 10.21.0.1")


async def test_an_ipv4_mapped_ipv6_peer_matches_an_ipv4_network(client: httpx.AsyncClient) -> None:
    rule = await _rule(client, name="lan", source_ip="192.168.1.0/24")

    result = await client.post(
        "/api/v1/rules/test", json={"source_ip": "::ffff:192.168.1.7", "calling_ae": "X"}
    )

    assert result.json()["matched_rule_id"] == rule


async def test_the_tester_refuses_a_network_or_garbage_as_source_ip(
    client: httpx.AsyncClient,
) -> None:
    network = await client.post("/api/v1/rules/test", json={"source_ip": "10.0.0.0/8"})
    garbage = await client.post("/api/v1/rules/test", json={"source_ip": "ten"})

    assert network.status_code == garbage.status_code == 422
    assert network.json()["detail"][0]["loc"] == ["body", "source_ip"]


async def test_a_rule_with_a_non_network_cidr_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/rules", json={"name": "bad", "source_ip": "10.0.0.1/8"})

    assert response.status_code == 422
    assert "host bits set" in response.json()["detail"][0]["msg"]


async def test_a_slow_filter_that_slipped_in_is_reported_timed_out_not_waited_for(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    """A rule stored before filters were checked (written to the DB directly)."""
    async with ctx.db.session() as session:
        session.add(RoutingRule(name="legacy slow", series_description_filter="^(a|aa)+$"))
    await _rule(client, name="chest", priority=200, series_description_filter="CHEST")

    start = time.monotonic()
    answer = await client.post(
        "/api/v1/rules/test",
        json={
            "source_ip": "10.0.0.1",
            "calling_ae": "CT",
            "series_description": "a" * 40 + "b CHEST",
        },
    )
    seconds = time.monotonic() - start

    assert answer.status_code == 200, answer.text
    assert seconds < 2.0  # stdlib re: minutes on this input
    verdicts = {v["name"]: v for v in answer.json()["rules"]}
    (reason,) = verdicts["legacy slow"]["reasons"]
    assert reason.startswith("series description filter: REGEX_TIMEOUT: filter '^(a|aa)+$'")
    assert answer.json()["matched_rule_name"] == "chest"
