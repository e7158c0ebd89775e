"""CRUD /api/v1/rules with validation, against a fresh Postgres database."""

import httpx
import pytest


async def _destination(client: httpx.AsyncClient, name: str = "PACS") -> int:
    response = await client.post(
        "/api/v1/destinations",
        json={"name": name, "host": "127.0.0.1", "port": 104, "ae_title": name},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _field_error(response: httpx.Response, field: str) -> str:
    """The message of the 422 entry that names ``field`` in the body."""
    assert response.status_code == 422, response.text
    messages = [e["msg"] for e in response.json()["detail"] if e["loc"][:2] == ["body", field]]
    assert messages, response.json()
    return str(messages[0])


async def test_a_rule_is_created_with_defaults_read_listed_changed_and_deleted(
    client: httpx.AsyncClient,
) -> None:
    pacs = await _destination(client)

    created = await client.post("/api/v1/rules", json={"name": "chest", "destination_ids": [pacs]})
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule | {"id": 0, "destinations": []} == {
        "id": 0,
        "name": "chest",
        "enabled": True,
        "priority": 100,
        "source_ip": None,
        "source_ae_title": None,
        "study_description_filter": ".*",
        "series_description_filter": ".*",
        "ttl_days": 30,
        "failure_notices": True,
        "destination_ids": [pacs],
        "destinations": [],
    }
    assert [d["name"] for d in rule["destinations"]] == ["PACS"]

    assert (await client.get(f"/api/v1/rules/{rule['id']}")).json() == rule
    assert (await client.get("/api/v1/rules")).json() == [rule]

    changed = await client.patch(
        f"/api/v1/rules/{rule['id']}",
        json={"priority": 5, "source_ip": "10.0.0.0/8", "source_ae_title": "CT_SCANNER"},
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["priority"], changed.json()["source_ip"]) == (5, "10.0.0.0/8")
    assert changed.json()["name"] == "chest" and changed.json()["destination_ids"] == [pacs]
    quiet = await client.patch(f"/api/v1/rules/{rule['id']}", json={"failure_notices": False})
    assert quiet.status_code == 200 and quiet.json()["failure_notices"] is False
    refused = await client.patch(f"/api/v1/rules/{rule['id']}", json={"failure_notices": None})
    assert refused.status_code == 422

    cleared = await client.patch(
        f"/api/v1/rules/{rule['id']}", json={"source_ip": None, "destination_ids": []}
    )
    assert cleared.json()["source_ip"] is None and cleared.json()["destination_ids"] == []
    assert cleared.json()["source_ae_title"] == "CT_SCANNER"

    deleted = await client.delete(f"/api/v1/rules/{rule['id']}")
    assert deleted.status_code == 204
    assert (await client.get(f"/api/v1/rules/{rule['id']}")).status_code == 404
    assert (await client.get("/api/v1/rules")).json() == []


async def test_rules_are_listed_in_matching_order(client: httpx.AsyncClient) -> None:
    for name, priority in (("late", 200), ("early", 1), ("b-middle", 50), ("a-middle", 50)):
        response = await client.post("/api/v1/rules", json={"name": name, "priority": priority})
        assert response.status_code == 201

    names = [r["name"] for r in (await client.get("/api/v1/rules")).json()]

    assert names == ["early", "a-middle", "b-middle", "late"]


@pytest.mark.parametrize("field", ["study_description_filter", "series_description_filter"])
async def test_a_bad_regex_is_a_422_naming_the_field_and_the_regex_error(
    client: httpx.AsyncClient, field: str
) -> None:
    response = await client.post("/api/v1/rules", json={"name": "broken", field: "CHEST[("})

    message = _field_error(response, field)
    assert "invalid regular expression 'CHEST[('" in message
    assert "unterminated character set" in message


async def test_a_bad_regex_is_refused_on_update_too(client: httpx.AsyncClient) -> None:
    rule = (await client.post("/api/v1/rules", json={"name": "chest"})).json()

    response = await client.patch(
        f"/api/v1/rules/{rule['id']}", json={"series_description_filter": "(?P<x"}
    )

    assert "invalid regular expression" in _field_error(response, "series_description_filter")


@pytest.mark.parametrize(
    ("source_ip", "words"),
    [
        ("10.0.0.300", "not an IP address or CIDR network"),
        ("scanner.local", "not an IP address or CIDR network"),
        ("10.0.0.5/8", "has host bits set"),
        ("10.0.0.0/33", "not an IP address or CIDR network"),
    ],
)
async def test_source_ip_must_be_an_ip_or_a_cidr_network(
    client: httpx.AsyncClient, source_ip: str, words: str
) -> None:
    response = await client.post("/api/v1/rules", json={"name": "r", "source_ip": source_ip})

    assert words in _field_error(response, "source_ip")


@pytest.mark.parametrize("source_ip", ["192.168.1.20", "10.0.0.0/8", "fd00::/8", "::1"])
async def test_ips_and_networks_of_both_families_are_accepted(
    client: httpx.AsyncClient, source_ip: str
) -> None:
    response = await client.post("/api/v1/rules", json={"name": "r", "source_ip": source_ip})

    assert response.status_code == 201, response.text
    assert response.json()["source_ip"] == source_ip


@pytest.mark.parametrize(
    ("ae_title", "words"),
    [
        ("A_VERY_LONG_AE_TITLE", "at most 16 characters"),
        ("CT\\1", "backslash"),
        ("CT\n1", "must not contain the character '\\n'"),
        ("КТ", "must not contain the character"),
    ],
)
async def test_a_bad_source_ae_title_is_a_422_naming_the_field(
    client: httpx.AsyncClient, ae_title: str, words: str
) -> None:
    response = await client.post("/api/v1/rules", json={"name": "r", "source_ae_title": ae_title})

    assert words in _field_error(response, "source_ae_title")


async def test_a_blank_source_ae_title_means_any_caller(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/rules", json={"name": "r", "source_ae_title": "   "})

    assert response.status_code == 201 and response.json()["source_ae_title"] is None


async def test_unknown_destination_ids_are_a_422_naming_them(client: httpx.AsyncClient) -> None:
    pacs = await _destination(client)

    response = await client.post(
        "/api/v1/rules", json={"name": "r", "destination_ids": [pacs, 999001, 999002]}
    )

    assert _field_error(response, "destination_ids") == (
        "unknown destination id(s): 999001, 999002"
    )
    assert (await client.get("/api/v1/rules")).json() == []


async def test_ttl_days_must_be_at_least_one(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/rules", json={"name": "r", "ttl_days": 0})

    assert "greater than or equal to 1" in _field_error(response, "ttl_days")


async def test_required_fields_cannot_be_nulled_on_update(client: httpx.AsyncClient) -> None:
    rule = (await client.post("/api/v1/rules", json={"name": "chest"})).json()

    response = await client.patch(f"/api/v1/rules/{rule['id']}", json={"name": None})

    assert _field_error(response, "name") == "name cannot be null"


async def test_a_duplicate_rule_name_is_a_409(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/rules", json={"name": "chest"})
    other = (await client.post("/api/v1/rules", json={"name": "other"})).json()

    duplicate = await client.post("/api/v1/rules", json={"name": " chest "})
    renamed = await client.patch(f"/api/v1/rules/{other['id']}", json={"name": "chest"})

    assert duplicate.status_code == renamed.status_code == 409
    assert duplicate.json() == {"detail": "a rule named 'chest' already exists"}
    assert renamed.json() == {"detail": "a rule named 'chest' already exists"}


async def test_unknown_rules_are_404s(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/api/v1/rules/424242"),
        await client.patch("/api/v1/rules/424242", json={"priority": 1}),
        await client.delete("/api/v1/rules/424242"),
    ):
        assert response.status_code == 404
        assert response.json() == {"detail": "rule 424242 not found"}


async def test_unknown_fields_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/rules", json={"name": "r", "source_aet": "CT"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "source_aet"]


@pytest.mark.parametrize(
    ("pattern", "code"),
    [
        ("^(a+)+$", "REGEX_NESTED_REPEAT"),  # the filter that froze the gateway (issue 11)
        (r"^(\w+\s?)*$", "REGEX_NESTED_REPEAT"),
        ("^(a|aa)+$", "REGEX_TOO_SLOW"),  # no nested repeat: caught by the timed probes
    ],
)
async def test_a_pathological_filter_is_refused_at_save_with_the_reason(
    client: httpx.AsyncClient, pattern: str, code: str
) -> None:
    created = await client.post(
        "/api/v1/rules", json={"name": f"slow {code}", "series_description_filter": pattern}
    )
    rule = (await client.post("/api/v1/rules", json={"name": f"fine {code}"})).json()
    updated = await client.patch(
        f"/api/v1/rules/{rule['id']}", json={"study_description_filter": pattern}
    )

    assert f"{code}: {pattern!r}" in _field_error(created, "series_description_filter")
    assert f"{code}: {pattern!r}" in _field_error(updated, "study_description_filter")
    names = [r["name"] for r in (await client.get("/api/v1/rules")).json()]
    assert f"slow {code}" not in names


async def test_filters_with_repeats_that_cannot_explode_are_accepted(
    client: httpx.AsyncClient,
) -> None:
    for n, pattern in enumerate([r"(\d+\.)+\d+", r"(?i)\bAX\b.*\d+(\.\d+)?\s*mm", r"(.*a){3}"]):
        response = await client.post(
            "/api/v1/rules", json={"name": f"ok {n}", "series_description_filter": pattern}
        )
        assert response.status_code == 201, response.text
