"""CRUD /api/v1/destinations with validation, on the embedded SQLite database."""

from pathlib import Path

import httpx
import pytest

from pulmogate.common.db.migrate import upgrade
from services.api.tests.rows import MakeJob

PACS = {"name": "PACS", "host": "pacs.hospital.local", "port": 104, "ae_title": "ORTHANC"}


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """This module runs on SQLite, as `pulmogate up` does."""
    path: Path = tmp_path_factory.mktemp("api-sqlite") / "pulmogate.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    return url


def _field_error(response: httpx.Response, field: str) -> str:
    assert response.status_code == 422, response.text
    messages = [e["msg"] for e in response.json()["detail"] if e["loc"][:2] == ["body", field]]
    assert messages, response.json()
    return str(messages[0])


async def test_a_destination_is_created_read_listed_changed_and_deleted(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post("/api/v1/destinations", json=PACS)
    assert created.status_code == 201, created.text
    dest = created.json()
    assert dest == {**PACS, "enabled": True, "image_encoding": "jpeg", "id": dest["id"]}

    assert (await client.get(f"/api/v1/destinations/{dest['id']}")).json() == dest
    assert (await client.get("/api/v1/destinations")).json() == [dest]

    changed = await client.patch(
        f"/api/v1/destinations/{dest['id']}", json={"port": 4242, "enabled": False}
    )
    assert changed.status_code == 200
    assert changed.json() == {**dest, "port": 4242, "enabled": False}

    assert (await client.delete(f"/api/v1/destinations/{dest['id']}")).status_code == 204
    assert (await client.get("/api/v1/destinations")).json() == []


@pytest.mark.parametrize("encoding", ["jpeg", "jpeg-ls", "rle", "uncompressed"])
async def test_each_image_encoding_is_stored_and_changed_alone(
    client: httpx.AsyncClient, encoding: str
) -> None:
    created = await client.post(
        "/api/v1/destinations",
        json={**PACS, "name": f"PACS-{encoding}", "image_encoding": encoding},
    )
    assert created.status_code == 201, created.text
    dest = created.json()
    assert dest["image_encoding"] == encoding

    changed = await client.patch(
        f"/api/v1/destinations/{dest['id']}", json={"image_encoding": "uncompressed"}
    )
    assert changed.status_code == 200
    assert changed.json() == {**dest, "image_encoding": "uncompressed"}
    assert (await client.delete(f"/api/v1/destinations/{dest['id']}")).status_code == 204


@pytest.mark.parametrize("encoding", ["JPEG", "jpeg2000", "", None, "lossless"])
async def test_an_unknown_image_encoding_is_a_422_naming_the_choices(
    client: httpx.AsyncClient, encoding: str | None
) -> None:
    response = await client.post("/api/v1/destinations", json={**PACS, "image_encoding": encoding})

    message = _field_error(response, "image_encoding")
    assert "'jpeg', 'jpeg-ls', 'rle' or 'uncompressed'" in message, message


async def test_a_null_image_encoding_in_a_patch_is_a_422(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/v1/destinations", json={**PACS, "name": "PACS-null"})
    dest = created.json()

    response = await client.patch(
        f"/api/v1/destinations/{dest['id']}", json={"image_encoding": None}
    )

    assert response.status_code == 422, response.text
    assert "image_encoding cannot be null" in response.text
    assert (await client.delete(f"/api/v1/destinations/{dest['id']}")).status_code == 204


@pytest.mark.parametrize("port", [0, 65536, -1])
async def test_a_port_outside_1_to_65535_is_a_422_naming_port(
    client: httpx.AsyncClient, port: int
) -> None:
    response = await client.post("/api/v1/destinations", json={**PACS, "port": port})

    assert "port" in response.json()["detail"][0]["loc"]
    _field_error(response, "port")


@pytest.mark.parametrize(
    ("ae_title", "words"),
    [
        ("", "must not be empty or all spaces"),
        ("                ", "must not be empty or all spaces"),
        ("SEVENTEEN_CHARS_X", "at most 16 characters"),
        ("PACS\\2", "backslash"),
        ("PACS\x1b", "must not contain the character '\\x1b'"),
    ],
)
async def test_a_bad_ae_title_is_a_422_naming_ae_title(
    client: httpx.AsyncClient, ae_title: str, words: str
) -> None:
    response = await client.post("/api/v1/destinations", json={**PACS, "ae_title": ae_title})

    assert words in _field_error(response, "ae_title")


async def test_ae_titles_keep_inner_spaces_and_lose_padding(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/destinations", json={**PACS, "ae_title": " MY PACS  "})

    assert response.status_code == 201 and response.json()["ae_title"] == "MY PACS"


async def test_a_bad_ae_title_is_refused_on_update_too(client: httpx.AsyncClient) -> None:
    dest = (await client.post("/api/v1/destinations", json=PACS)).json()

    response = await client.patch(f"/api/v1/destinations/{dest['id']}", json={"ae_title": "X" * 17})

    assert "at most 16 characters" in _field_error(response, "ae_title")


async def test_a_host_with_spaces_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/destinations", json={**PACS, "host": "pacs local"})

    _field_error(response, "host")


async def test_a_duplicate_destination_name_is_a_409(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/destinations", json=PACS)
    other = (await client.post("/api/v1/destinations", json={**PACS, "name": "WS"})).json()

    duplicate = await client.post("/api/v1/destinations", json=PACS)
    renamed = await client.patch(f"/api/v1/destinations/{other['id']}", json={"name": "PACS"})

    assert duplicate.status_code == renamed.status_code == 409
    assert duplicate.json() == {"detail": "a destination named 'PACS' already exists"}
    assert renamed.json() == {"detail": "a destination named 'PACS' already exists"}


async def test_a_destination_a_rule_sends_to_cannot_be_deleted(
    client: httpx.AsyncClient,
) -> None:
    dest = (await client.post("/api/v1/destinations", json=PACS)).json()
    await client.post("/api/v1/rules", json={"name": "chest", "destination_ids": [dest["id"]]})

    response = await client.delete(f"/api/v1/destinations/{dest['id']}")

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "destination 'PACS' is used by rule(s) chest; remove it from them first"
    )


async def test_a_destination_with_delivery_history_cannot_be_deleted(
    client: httpx.AsyncClient, make_job: MakeJob
) -> None:
    await make_job(deliveries=[{"destination": PACS, "status": "delivered", "attempts": 1}])
    (dest,) = (await client.get("/api/v1/destinations")).json()

    response = await client.delete(f"/api/v1/destinations/{dest['id']}")

    assert response.status_code == 409
    assert "has 1 deliveries on record; disable it (enabled=false)" in response.json()["detail"]


async def test_unknown_destinations_are_404s(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/api/v1/destinations/31337"),
        await client.patch("/api/v1/destinations/31337", json={"port": 105}),
        await client.delete("/api/v1/destinations/31337"),
    ):
        assert response.status_code == 404
        assert response.json() == {"detail": "destination 31337 not found"}


async def test_jobs_are_served_from_sqlite_too(
    client: httpx.AsyncClient, make_job: MakeJob
) -> None:
    job_id = await make_job(status="failed", reason_code="ANALYSIS_ERROR", reason="boom")

    listing = (await client.get("/api/v1/jobs", params={"status": "failed"})).json()

    assert [j["id"] for j in listing["items"]] == [job_id] and listing["total"] == 1
    assert listing["items"][0]["reason_code"] == "ANALYSIS_ERROR"
    assert listing["items"][0]["created_at"].endswith(("+00:00", "Z"))
