"""Uploads are bounded before they are read, against a real `pulmogate api` process.

Hostile bodies are streamed over a real socket: nothing is spooled before the caller is
known and allowed to upload, a body over the limit is refused from its length or as it
streams, and the storage watermark stops multipart and resumable uploads alike (on a real
small volume, a tmpfs, where the test may mount one).
"""

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pulmogate.tools.phantom import make_phantom, write_series
from tests.security.api_process import (
    ApiProcess,
    StreamedAnswer,
    fill_to,
    folder_bytes,
    run_api,
    small_volume,
    stream_post,
    used_percent,
)

MiB = 1024**2
BOUNDARY = "pulmogate-test-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
# A well-formed start of a file part: whatever follows is the file's bytes.
FILE_PART = (
    f"--{BOUNDARY}\r\n"
    'Content-Disposition: form-data; name="files"; filename="study.zip"\r\n'
    "Content-Type: application/zip\r\n\r\n"
).encode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def study_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A zipped 4-slice phantom series (a real upload)."""
    paths = write_series(make_phantom(slices=4, size=64), tmp_path_factory.mktemp("s"), seed=5)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in paths:
            archive.write(path, f"study/{path.name}")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    """The api alone on the embedded SQLite database, uploads limited to 700 MiB."""
    data = tmp_path_factory.mktemp("bounds") / "data"
    with run_api(data, extra_env={"PULMOGATE_UPLOAD_MAX_BYTES": str(700 * MiB)}) as process:
        yield process


@pytest.fixture(scope="module")
def tokens(api: ApiProcess) -> dict[str, str]:
    """Bearer tokens of an operator and a viewer (made by the admin)."""
    out = {}
    with api.sign_in() as admin:
        for role in ("operator", "viewer"):
            created = admin.post(
                "/api/v1/users",
                json={"username": role, "password": f"{role} secret words", "role": role},
            )
            assert created.status_code == 201, created.text
            with api.sign_in(role, f"{role} secret words") as user:
                out[role] = api.token(user)
    return out


def _grown(api: ApiProcess, before: int) -> int:
    return folder_bytes(api.data_dir) + folder_bytes(api.temp_dir) - before


def upload_of(api: ApiProcess, headers: dict[str, str], size: int, **kwargs: Any) -> StreamedAnswer:
    """A multipart upload declaring ``size`` bytes, streamed at most that far (one file part,
    then NUL bytes), as ``stream_post`` sends it."""
    return stream_post(
        api.port,
        "/api/v1/uploads",
        {**MULTIPART, **headers},
        declared=size,
        send_at_most=size,
        prefix=FILE_PART,
        **kwargs,
    )


def _written(api: ApiProcess) -> int:
    return folder_bytes(api.data_dir) + folder_bytes(api.temp_dir)


def test_an_anonymous_600_mb_upload_is_refused_before_its_body_is_read(api: ApiProcess) -> None:
    before = _written(api)

    answer = upload_of(api, {}, 600 * MiB)

    assert answer.status == 401, answer.head
    assert answer.seconds < 5
    assert answer.sent_bytes < 64 * MiB  # the server stopped reading: the rest never left
    assert _grown(api, before) < MiB
    assert not (api.data_dir / "storage" / "uploads-staging").exists()


def test_a_viewer_upload_is_refused_by_its_role_before_its_body_is_read(
    api: ApiProcess, tokens: dict[str, str]
) -> None:
    before = _written(api)

    answer = upload_of(api, bearer(tokens["viewer"]), 600 * MiB)

    assert answer.status == 403, answer.head
    assert b"the viewer role may not do this" in answer.body
    assert answer.seconds < 5 and answer.sent_bytes < 64 * MiB
    assert _grown(api, before) < MiB


def test_a_viewer_session_without_the_csrf_header_is_refused_before_the_body(
    api: ApiProcess, tokens: dict[str, str]
) -> None:
    with api.sign_in("viewer", "viewer secret words") as viewer:
        cookie = "; ".join(f"{k}={v}" for k, v in viewer.cookies.items())
    before = _written(api)

    answer = upload_of(api, {"Cookie": cookie}, 600 * MiB)

    assert answer.status == 403, answer.head
    assert answer.seconds < 5 and answer.sent_bytes < 64 * MiB
    assert _grown(api, before) < MiB


def test_a_declared_length_over_the_limit_is_refused_before_any_byte_is_read(
    api: ApiProcess, tokens: dict[str, str]
) -> None:
    before = _written(api)

    answer = upload_of(api, bearer(tokens["operator"]), 800 * MiB)

    assert answer.status == 413, answer.head
    assert b"request body of 838860800 bytes is over the 700 MiB" in answer.body
    assert answer.seconds < 5 and answer.sent_bytes < 64 * MiB
    assert _grown(api, before) < MiB


def test_a_client_still_sending_when_refused_reads_the_refusal_not_a_reset(
    api: ApiProcess, tokens: dict[str, str]
) -> None:
    # Closing at once with the client's bytes unread resets the connection, and the part
    # of the answer not yet read by the client is lost: it would see a reset. A race, so
    # ten clients that read a little late, with a small receive window (without the
    # lingering close about a third of them lost the body here).
    for _ in range(10):
        answer = upload_of(
            api,
            bearer(tokens["operator"]),
            800 * MiB,
            read_after_s=0.05,
            receive_buffer=4096,
        )

        assert answer.status == 413, answer.head
        assert b"request body of 838860800 bytes is over the 700 MiB" in answer.body


def test_an_operator_upload_streams_into_storage_and_never_into_the_temp_folder(
    api: ApiProcess, tokens: dict[str, str], study_zip: bytes
) -> None:
    response = httpx.post(
        f"{api.url}/api/v1/uploads",
        headers=bearer(tokens["operator"]),
        files={"files": ("study.zip", study_zip, "application/zip")},
        timeout=60,
    )

    assert response.status_code == 201, response.text
    assert response.json()["files"] == 4
    assert folder_bytes(api.temp_dir) == 0
    assert not list((api.data_dir / "storage" / "uploads-staging").iterdir())
    stored = list((api.data_dir / "storage" / "incoming").rglob("*.dcm"))
    assert len(stored) == 4


def test_the_no_script_form_upload_checks_its_csrf_field_after_the_role(
    api: ApiProcess, tmp_path: Path
) -> None:
    files = write_series(make_phantom(slices=2, size=64), tmp_path, seed=17)
    with api.sign_in("operator", "operator secret words") as operator:
        csrf = operator.headers.pop("X-CSRF-Token")
        parts = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in files]
        forged = operator.post("/api/v1/uploads", files=parts, data={"csrf_token": "forged"})
        sent = operator.post("/api/v1/uploads", files=parts, data={"csrf_token": csrf})

    assert forged.status_code == 403 and "CSRF token" in forged.json()["detail"]
    assert sent.status_code == 201, sent.text
    assert not list((api.data_dir / "storage" / "uploads-staging").iterdir())


# --- a small volume: the watermark and a full disk -------------------------------------------


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    """The api with its data folder (SQLite, storage) on a 96 MiB tmpfs, watermark 60 %,
    uploads up to 16 MiB."""
    root = tmp_path_factory.mktemp("tight")
    with (
        small_volume(root / "data", 96) as data,
        run_api(
            data,
            extra_env={
                "PULMOGATE_UPLOAD_MAX_BYTES": str(16 * MiB),
                "PULMOGATE_DISK_MAX_USED_PERCENT": "60",
            },
        ) as process,
    ):
        yield process


@pytest.fixture(scope="module")
def tight_token(tight: ApiProcess) -> str:
    with tight.sign_in() as admin:
        return tight.token(admin)


@pytest.fixture(autouse=True)
def _empty_ballast(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each small-volume test starts with the volume as the api left it."""
    yield
    if "tight" in request.fixturenames:
        (request.getfixturevalue("tight").data_dir / "ballast.bin").unlink(missing_ok=True)


def test_a_chunked_body_past_the_limit_is_cut_off_as_it_streams(
    tight: ApiProcess, tight_token: str
) -> None:
    answer = stream_post(
        tight.port,
        "/api/v1/uploads",
        {**MULTIPART, **bearer(tight_token)},
        declared=None,
        send_at_most=40 * MiB,
        prefix=FILE_PART,
    )

    assert answer.status == 413, answer.head
    assert b"request body streamed is over the 16 MiB this route accepts" in answer.body
    assert answer.sent_bytes < 40 * MiB
    assert not list((tight.data_dir / "storage" / "uploads-staging").iterdir())


def test_an_upload_that_crosses_the_watermark_while_streaming_stops_with_507(
    tight: ApiProcess, tight_token: str
) -> None:
    fill_to(tight.data_dir, 55)

    answer = upload_of(tight, bearer(tight_token), 15 * MiB)

    assert answer.status == 507, answer.head
    assert re.search(rb"upload refused: storage 6\d\.\d % full, above the 60 % limit", answer.body)
    assert not list((tight.data_dir / "storage" / "uploads-staging").iterdir())
    assert used_percent(tight.data_dir) < 60


def test_resumable_chunks_respect_the_watermark_and_the_session_resumes_afterwards(
    tight: ApiProcess, tight_token: str, study_zip: bytes
) -> None:
    half = len(study_zip) // 2
    api = httpx.Client(base_url=tight.url, headers=bearer(tight_token), timeout=30)
    fill_to(tight.data_dir, 50)
    too_big = api.post("/api/v1/uploads/sessions", json={"filename": "big.zip", "size": 16 * MiB})
    opened = api.post(
        "/api/v1/uploads/sessions", json={"filename": "study.zip", "size": len(study_zip)}
    )
    sid = opened.json()["id"]
    first = api.put(f"/api/v1/uploads/sessions/{sid}?offset=0", content=study_zip[:half])
    fill_to(tight.data_dir, 65)  # another writer fills the volume meanwhile
    refused = api.put(f"/api/v1/uploads/sessions/{sid}?offset={half}", content=study_zip[half:])
    offset_after = api.get(f"/api/v1/uploads/sessions/{sid}").json()["offset"]
    early = api.post("/api/v1/uploads/sessions/finish", json={"session_ids": [sid]})
    kept = api.get(f"/api/v1/uploads/sessions/{sid}")
    fill_to(tight.data_dir, 40)
    resumed = api.put(f"/api/v1/uploads/sessions/{sid}?offset={half}", content=study_zip[half:])
    done = api.post("/api/v1/uploads/sessions/finish", json={"session_ids": [sid]})
    gone = api.get(f"/api/v1/uploads/sessions/{sid}")

    assert too_big.status_code == 507
    assert "would take the storage volume over its 60 % limit" in too_big.json()["detail"]
    assert opened.status_code == 201 and first.json()["offset"] == half
    assert refused.status_code == 507
    assert refused.json()["detail"].startswith(f"chunk of upload session {sid} refused: storage")
    assert offset_after == half
    assert early.status_code == 507 and kept.status_code == 200
    assert resumed.json()["offset"] == len(study_zip)
    assert done.status_code == 201, done.text
    assert gone.status_code == 404


def test_at_a_full_disk_bearer_calls_and_sign_in_still_work(
    tight: ApiProcess, tight_token: str
) -> None:
    reserve = tight.data_dir / "db-reserve.bin"
    assert reserve.is_file()
    fill_to(tight.data_dir, 100)

    jobs = httpx.get(f"{tight.url}/api/v1/jobs", headers=bearer(tight_token), timeout=30)
    status = httpx.get(f"{tight.url}/api/v1/status", headers=bearer(tight_token), timeout=30)
    signed_in = tight.sign_in()
    me = signed_in.get("/api/v1/auth/me")
    upload = httpx.post(
        f"{tight.url}/api/v1/uploads",
        headers=bearer(tight_token),
        files={"files": ("x.dcm", b"x" * 2000)},
        timeout=30,
    )
    released = not reserve.exists()
    fill_to(tight.data_dir, 30)
    again = tight.sign_in()

    assert jobs.status_code == 200, jobs.text
    assert status.status_code == 200 and status.json()["disk"]["accepting"] is False
    assert me.status_code == 200 and me.json()["auth"] == "session"
    assert upload.status_code == 507
    assert released and "the database reserve was released" in tight.logs()
    assert again.get("/api/v1/auth/me").status_code == 200
    assert reserve.is_file()  # allocated again once there was room
