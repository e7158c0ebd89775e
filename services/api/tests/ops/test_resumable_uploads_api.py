"""Resumable uploads: chunks at the reported offset, resume after a gap, finish as one upload."""

import io
import zipfile
from pathlib import Path

import httpx
import pytest

from pulmogate.common.db.accounts import Role
from pulmogate.common.runtime import Context
from pulmogate.tools.phantom import make_phantom, write_series
from services.api.tests.conftest import ClientAs


@pytest.fixture(scope="module")
def study_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A zipped 5-slice phantom series."""
    paths = write_series(make_phantom(slices=5, size=64), tmp_path_factory.mktemp("s"), seed=77)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in paths:
            archive.write(path, path.name)
    return buffer.getvalue()


async def test_a_file_sent_in_chunks_resumes_at_the_servers_offset_and_becomes_a_series(
    client: httpx.AsyncClient, ctx: Context, study_zip: bytes
) -> None:
    size = len(study_zip)
    opened = await client.post(
        "/api/v1/uploads/sessions", json={"filename": "study.zip", "size": size}
    )
    assert opened.status_code == 201, opened.text
    sid = opened.json()["id"]
    third = size // 3

    first = await client.put(
        f"/api/v1/uploads/sessions/{sid}", params={"offset": 0}, content=study_zip[:third]
    )
    # A retry of a chunk that already arrived, and a chunk that skips ahead, are both refused.
    gap = await client.put(
        f"/api/v1/uploads/sessions/{sid}",
        params={"offset": 2 * third},
        content=study_zip[2 * third :],
    )
    early_finish = await client.post("/api/v1/uploads/sessions/finish", json={"session_ids": [sid]})
    resume_at = (await client.get(f"/api/v1/uploads/sessions/{sid}")).json()["offset"]
    rest = await client.put(
        f"/api/v1/uploads/sessions/{sid}",
        params={"offset": resume_at},
        content=study_zip[resume_at:],
    )
    too_much = await client.put(
        f"/api/v1/uploads/sessions/{sid}", params={"offset": size}, content=b"x"
    )
    done = await client.post("/api/v1/uploads/sessions/finish", json={"session_ids": [sid]})

    assert first.json()["offset"] == third
    assert gap.status_code == 409 and gap.json()["detail"].endswith(f"at offset {third}")
    assert early_finish.status_code == 409 and f"has {third} of {size} bytes" in early_finish.text
    assert resume_at == third
    assert rest.json()["offset"] == size
    assert too_much.status_code == 413
    assert done.status_code == 201, done.text
    assert done.json()["files"] == 5 and done.json()["series"][0]["instance_count"] == 5
    assert (await client.get(f"/api/v1/uploads/sessions/{sid}")).status_code == 404
    assert not any((ctx.storage.upload_sessions_folder()).iterdir())


async def test_sessions_belong_to_their_user_and_bad_ids_are_not_found(
    client_as: ClientAs,
) -> None:
    alice = await client_as(Role.OPERATOR)
    bob = await client_as(Role.OPERATOR)
    sid = (
        await alice.post("/api/v1/uploads/sessions", json={"filename": "a.dcm", "size": 10})
    ).json()["id"]

    foreign = await bob.get(f"/api/v1/uploads/sessions/{sid}")
    traversal = await alice.get("/api/v1/uploads/sessions/..%2F..%2Fetc")
    huge = await alice.post(
        "/api/v1/uploads/sessions", json={"filename": "big.zip", "size": 10 * 1024**4}
    )

    assert foreign.status_code == 404
    assert traversal.status_code == 404
    assert huge.status_code == 413


async def test_a_finished_session_with_a_foreign_file_is_refused_naming_it(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    sid = (
        await client.post("/api/v1/uploads/sessions", json={"filename": "notes.txt", "size": 300})
    ).json()["id"]
    await client.put(f"/api/v1/uploads/sessions/{sid}", params={"offset": 0}, content=b"n" * 300)

    response = await client.post("/api/v1/uploads/sessions/finish", json={"session_ids": [sid]})

    assert response.status_code == 422
    assert response.json()["detail"].startswith("notes.txt: not a DICOM file")
