"""POST /api/v1/uploads: phantom CT files and zips become announced series; unsafe ones are
refused with the file's name (real Postgres, real files)."""

import io
import json
import stat
import zipfile
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid
from sqlalchemy import func, select

from pulmogate.common.db.models import Instance, OutboxMessage, Series
from pulmogate.common.db.operations import Upload
from pulmogate.common.runtime import Context
from pulmogate.router.rules import rule_for
from pulmogate.tools.phantom import make_phantom, write_series


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A small phantom CT series (6 slices of 64x64)."""
    folder = tmp_path_factory.mktemp("phantom")
    return write_series(
        make_phantom(slices=6, size=64), folder, patient_name="PHANTOM^UPLOAD", seed=3
    )


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def test_a_zip_becomes_a_complete_series_announced_for_the_chosen_rule(
    client: httpx.AsyncClient, ctx: Context, phantom_files: list[Path]
) -> None:
    rule = await client.post("/api/v1/rules", json={"name": "manual", "source_ae_title": "CT7"})
    data = _zip({f"study/slice{i}.dcm": p.read_bytes() for i, p in enumerate(phantom_files)})

    response = await client.post(
        "/api/v1/uploads",
        files={"files": ("study.zip", data, "application/zip")},
        data={"rule_id": str(rule.json()["id"])},
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["files"] == 6 and len(body["series"]) == 1
    async with ctx.db.session() as session:
        series = await session.get(Series, body["series"][0]["series_id"])
        assert series is not None
        instances = (
            await session.scalars(select(Instance).where(Instance.series_id == series.id))
        ).all()
        upload = await session.scalar(select(Upload).where(Upload.series_id == series.id))
        events = (await session.scalars(select(OutboxMessage))).all()
        chosen, why = await rule_for(
            session, series, timeout_s=ctx.settings.rule_regex_timeout_ms / 1000
        )
    assert series.status == "complete" and series.calling_ae == "UPLOAD"
    assert series.instance_count == len(instances) == 6
    assert all(Path(i.path).is_file() for i in instances)
    assert upload is not None and upload.rule_id == rule.json()["id"]
    assert [e.routing_key for e in events] == ["series.arrived"]
    assert json.loads(events[0].payload)["series_id"] == series.id
    assert chosen is not None and chosen.name == "manual" and why == ""
    assert not list((ctx.storage.staging_folder()).iterdir())

    again = await client.post(
        "/api/v1/uploads", files={"files": ("s.dcm", phantom_files[0].read_bytes())}
    )
    assert again.status_code == 409
    assert "already held" in again.json()["detail"]


async def test_loose_dicom_files_are_accepted_and_matched_by_rules_without_a_choice(
    client: httpx.AsyncClient, phantom_files: list[Path], tmp_path: Path
) -> None:
    other = write_series(make_phantom(slices=3, size=64), tmp_path, seed=9)

    response = await client.post(
        "/api/v1/uploads",
        files=[("files", (p.name, p.read_bytes(), "application/dicom")) for p in other],
    )

    assert response.status_code == 201, response.text
    assert response.json()["series"][0]["rule_id"] is None
    assert response.json()["series"][0]["instance_count"] == 3


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ("../../etc/evil.dcm", "unsafe path in zip (absolute or '..': zip-slip)"),
        ("/abs/evil.dcm", "unsafe path in zip (absolute or '..': zip-slip)"),
        ("notes.txt", "not a DICOM file"),
    ],
)
async def test_unsafe_or_foreign_zip_members_refuse_the_upload_naming_the_member(
    client: httpx.AsyncClient, ctx: Context, phantom_files: list[Path], member: str, reason: str
) -> None:
    data = _zip({"ok.dcm": phantom_files[0].read_bytes(), member: b"hello, not dicom"})

    response = await client.post("/api/v1/uploads", files={"files": ("bad.zip", data)})

    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"bad.zip/{member}: {reason}")
    assert not any(p.is_file() for p in ctx.storage.root.rglob("*"))


async def test_a_symlink_member_is_refused(client: httpx.AsyncClient) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("link.dcm")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")

    response = await client.post("/api/v1/uploads", files={"files": ("l.zip", buffer.getvalue())})

    assert response.status_code == 422
    assert response.json()["detail"] == "l.zip/link.dcm: symbolic link in zip"


async def test_a_zip_bomb_is_refused_by_its_ratio(client: httpx.AsyncClient) -> None:
    data = _zip({"bomb.dcm": bytes(20 * 1024 * 1024)})

    response = await client.post("/api/v1/uploads", files={"files": ("b.zip", data)})

    assert response.status_code == 422
    assert response.json()["detail"] == "b.zip/bomb.dcm: compression ratio above 100:1 (zip bomb)"


async def test_a_non_dicom_file_and_an_empty_upload_are_refused(
    client: httpx.AsyncClient,
) -> None:
    text = await client.post("/api/v1/uploads", files={"files": ("readme.txt", b"x" * 300)})
    empty = await client.post("/api/v1/uploads", files={"files": ("DICOMDIR", b"")})

    assert text.status_code == empty.status_code == 422
    assert text.json()["detail"].startswith("readme.txt: not a DICOM file")
    assert empty.json()["detail"] == "(upload): no DICOM files in the upload"


def _other_objects(phantom: Path, folder: Path) -> dict[str, bytes]:
    """A study export's other objects, made from a phantom slice: a scout (CT, LOCALIZER)
    and a secondary capture (a dose page)."""
    folder.mkdir(exist_ok=True)
    scout = dcmread(phantom)
    scout.SeriesInstanceUID = scout.SOPInstanceUID = generate_uid()
    scout.file_meta.MediaStorageSOPInstanceUID = scout.SOPInstanceUID
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    capture = dcmread(phantom)
    capture.SeriesInstanceUID = capture.SOPInstanceUID = generate_uid()
    capture.file_meta.MediaStorageSOPInstanceUID = capture.SOPInstanceUID
    capture.SOPClassUID = capture.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    out = {}
    for name, ds in (("scout.dcm", scout), ("dose.dcm", capture)):
        ds.save_as(folder / name)
        out[f"study/{name}"] = (folder / name).read_bytes()
    return out


async def test_a_study_export_keeps_its_ct_series_and_lists_the_other_objects_skipped(
    client: httpx.AsyncClient, ctx: Context, phantom_files: list[Path], tmp_path: Path
) -> None:
    """As when a PACS forwards the study (non_ct_objects = discard): not stored, no series."""
    ct = {f"study/slice{i}.dcm": p.read_bytes() for i, p in enumerate(phantom_files)}
    data = _zip(ct | _other_objects(phantom_files[0], tmp_path / "others"))

    response = await client.post("/api/v1/uploads", files={"files": ("export.zip", data)})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["files"] == 6 and len(body["series"]) == 1
    assert body["skipped"] == [
        {"file": "export.zip/study/scout.dcm", "reason": "a CT localizer (scout)"},
        {
            "file": "export.zip/study/dose.dcm",
            "reason": "SecondaryCaptureImageStorage is not a CT image",
        },
    ]
    async with ctx.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Series)) == 1
    assert len(list(ctx.storage.incoming_folder().rglob("*.dcm"))) == 6


async def test_an_upload_of_other_objects_only_or_under_reject_is_refused_naming_them(
    client: httpx.AsyncClient, ctx: Context, phantom_files: list[Path], tmp_path: Path
) -> None:
    others = _other_objects(phantom_files[0], tmp_path / "others")
    only = await client.post("/api/v1/uploads", files={"files": ("o.zip", _zip(others))})
    ctx.settings.non_ct_objects = "reject"
    ct = {"study/slice0.dcm": phantom_files[0].read_bytes()}
    rejected = await client.post("/api/v1/uploads", files={"files": ("r.zip", _zip(ct | others))})

    assert only.status_code == rejected.status_code == 422
    assert only.json()["detail"] == (
        "(upload): no CT image to analyse in the upload: 2 other object(s) skipped, "
        "e.g. o.zip/study/scout.dcm: a CT localizer (scout)"
    )
    assert rejected.json()["detail"] == "r.zip/study/scout.dcm: a CT localizer (scout)"
    assert not any(p.is_file() for p in ctx.storage.root.rglob("*.dcm"))


async def test_an_upload_whose_filing_fails_midway_leaves_none_of_its_files(
    client: httpx.AsyncClient, ctx: Context, phantom_files: list[Path], tmp_path: Path
) -> None:
    """Two series; a file where the second one's folder must go makes its move fail after
    the first series was moved: the first one's files are removed again."""
    second = write_series(make_phantom(slices=2, size=64), tmp_path / "second", seed=4)
    blocked = dcmread(second[0])
    folder = ctx.storage.instance_path(
        str(blocked.StudyInstanceUID), str(blocked.SeriesInstanceUID), str(blocked.SOPInstanceUID)
    ).parent
    folder.parent.mkdir(parents=True)
    folder.write_bytes(b"in the way")
    data = _zip(
        {f"a/{i}.dcm": p.read_bytes() for i, p in enumerate(phantom_files)}
        | {f"b/{i}.dcm": p.read_bytes() for i, p in enumerate(second)}
    )

    response = await client.post("/api/v1/uploads", files={"files": ("two.zip", data)})

    assert response.status_code == 500, response.text
    assert response.json()["detail"] == (
        "the upload could not be filed into storage (File exists): nothing was kept"
    )
    assert not list(ctx.storage.incoming_folder().rglob("*.dcm"))
    async with ctx.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Series)) == 0


async def test_an_unknown_rule_is_a_404(
    client: httpx.AsyncClient, phantom_files: list[Path]
) -> None:
    response = await client.post(
        "/api/v1/uploads",
        files={"files": ("a.dcm", phantom_files[0].read_bytes())},
        data={"rule_id": "31337"},
    )

    assert response.status_code == 404


async def test_uploads_are_refused_above_the_disk_watermark(
    client: httpx.AsyncClient, ctx: Context, phantom_files: list[Path]
) -> None:
    ctx.settings.disk_max_used_percent = 0.0  # any real use of the volume is above 0 %

    response = await client.post(
        "/api/v1/uploads", files={"files": ("a.dcm", phantom_files[0].read_bytes())}
    )

    assert response.status_code == 507
    assert "above the 0 % limit" in response.json()["detail"]
