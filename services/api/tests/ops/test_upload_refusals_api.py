"""Inputs that used to be 500s are 4xx with a reason, on PostgreSQL and on SQLite alike:
an upload reusing a SOP Instance UID of another series, NUL characters in names, searches
and DICOM text, and a resumable finish's documented ending of its sessions."""

from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from pulmogate.common.db.migrate import upgrade
from pulmogate.common.db.models import Instance, Series
from pulmogate.common.runtime import Context
from pulmogate.tools.phantom import make_phantom, write_series


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Each test on the shared PostgreSQL server and on a migrated SQLite file."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'pulmogate.db'}"
    upgrade(url)
    return url


@pytest.fixture
def series_files(tmp_path: Path) -> list[Path]:
    """Three phantom slices of one series."""
    return write_series(make_phantom(slices=3, size=64), tmp_path / "a", seed=41)


def _reuse_sop_uid(source: Path, out: Path) -> Path:
    """The same instance (same SOP Instance UID) relabelled into a new series."""
    ds = dcmread(source)
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(out)
    return out


async def test_an_upload_reusing_a_sop_instance_uid_of_another_series_is_409_naming_the_file(
    client: httpx.AsyncClient, ctx: Context, series_files: list[Path], tmp_path: Path
) -> None:
    first = await client.post(
        "/api/v1/uploads",
        files=[("files", (p.name, p.read_bytes(), "application/dicom")) for p in series_files],
    )
    reused = _reuse_sop_uid(series_files[1], tmp_path / "reused.dcm")

    second = await client.post(
        "/api/v1/uploads", files={"files": ("reused.dcm", reused.read_bytes())}
    )

    assert first.status_code == 201, first.text
    assert second.status_code == 409, second.text
    sop_uid = str(dcmread(reused).SOPInstanceUID)
    assert second.json()["detail"].startswith(
        f"reused.dcm: SOP Instance UID {sop_uid} is already stored in another series"
    )
    async with ctx.db.session() as session:
        series = await session.scalar(select(func.count()).select_from(Series))
        instances = await session.scalar(select(func.count()).select_from(Instance))
    assert (series, instances) == (1, 3)
    stored = list((ctx.storage.incoming_folder()).rglob("*.dcm"))
    assert len(stored) == 3
    assert not list((ctx.storage.staging_folder()).iterdir())


async def test_a_nul_in_a_dicom_text_field_of_an_upload_is_refused_naming_it(
    client: httpx.AsyncClient, ctx: Context, series_files: list[Path], tmp_path: Path
) -> None:
    ds = dcmread(series_files[0])
    ds.SeriesDescription = "AXIAL\x00LUNG"
    bad = tmp_path / "nul.dcm"
    ds.save_as(bad)

    response = await client.post("/api/v1/uploads", files={"files": ("nul.dcm", bad.read_bytes())})

    assert response.status_code == 422
    assert response.json()["detail"] == "nul.dcm: NUL character in series_description"
    assert not list((ctx.storage.incoming_folder()).rglob("*.dcm"))


async def test_nul_characters_in_names_searches_and_filters_are_422_not_500(
    client: httpx.AsyncClient,
) -> None:
    rule = await client.post("/api/v1/rules", json={"name": "chest\x00ct"})
    rule_filter = await client.post(
        "/api/v1/rules", json={"name": "ok", "series_description_filter": "lung\x00"}
    )
    destination = await client.post(
        "/api/v1/destinations",
        json={"name": "pacs\x00", "host": "10.0.0.1", "port": 104, "ae_title": "PACS"},
    )
    host = await client.post(
        "/api/v1/destinations",
        json={"name": "pacs", "host": "10.0.0.1\x00", "port": 104, "ae_title": "PACS"},
    )
    search = await client.get("/api/v1/jobs", params={"q": "chest\x00"})
    audit = await client.get("/api/v1/audit", params={"username": "a\x00"})

    for answer, field in ((rule, "name"), (rule_filter, "series_description_filter")):
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["loc"] == ["body", field]
        assert "NUL character" in answer.json()["detail"][0]["msg"]
    assert destination.status_code == 422 and host.status_code == 422
    for answer in (search, audit):
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["msg"] == "the URL must not contain a NUL character (%00)"
    assert (await client.get("/api/v1/rules")).json() == []


async def test_a_finish_keeps_its_sessions_until_the_files_are_checked_then_ends_them(
    client: httpx.AsyncClient, series_files: list[Path]
) -> None:
    data = series_files[0].read_bytes()
    sid = (
        await client.post("/api/v1/uploads/sessions", json={"filename": "a.dcm", "size": len(data)})
    ).json()["id"]
    missing_bytes = await client.post(
        "/api/v1/uploads/sessions/finish", json={"session_ids": [sid]}
    )
    unknown_rule = await client.post(
        "/api/v1/uploads/sessions/finish", json={"session_ids": [sid], "rule_id": 999}
    )
    still_there = await client.get(f"/api/v1/uploads/sessions/{sid}")
    await client.put(f"/api/v1/uploads/sessions/{sid}", params={"offset": 0}, content=data)
    done = await client.post("/api/v1/uploads/sessions/finish", json={"session_ids": [sid]})
    # The same file again: checked and refused (already held): that session ends as well.
    sid2 = (
        await client.post("/api/v1/uploads/sessions", json={"filename": "a.dcm", "size": len(data)})
    ).json()["id"]
    await client.put(f"/api/v1/uploads/sessions/{sid2}", params={"offset": 0}, content=data)
    refused = await client.post("/api/v1/uploads/sessions/finish", json={"session_ids": [sid2]})

    assert missing_bytes.status_code == 409 and unknown_rule.status_code == 404
    assert still_there.status_code == 200
    assert done.status_code == 201, done.text
    assert (await client.get(f"/api/v1/uploads/sessions/{sid}")).status_code == 404
    assert refused.status_code == 409 and "already held" in refused.json()["detail"]
    assert (await client.get(f"/api/v1/uploads/sessions/{sid2}")).status_code == 404


async def test_a_chunk_that_fails_midway_is_not_kept_and_the_offset_stays(
    client: httpx.AsyncClient, series_files: list[Path]
) -> None:
    data = series_files[0].read_bytes()
    sid = (
        await client.post("/api/v1/uploads/sessions", json={"filename": "a.dcm", "size": len(data)})
    ).json()["id"]
    await client.put(f"/api/v1/uploads/sessions/{sid}", params={"offset": 0}, content=data[:100])

    too_long = await client.put(
        f"/api/v1/uploads/sessions/{sid}", params={"offset": 100}, content=data[100:] + b"x" * 10
    )
    state = (await client.get(f"/api/v1/uploads/sessions/{sid}")).json()

    assert too_long.status_code == 413
    assert state["offset"] == 100
