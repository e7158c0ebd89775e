"""Resend, delete and results.zip of a job, and C-ECHO of a destination (real Postgres, dcmtk)."""

import io
import json
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
from pydicom.uid import SecondaryCaptureImageStorage
from sqlalchemy import delete, func, select
from sqlalchemy.orm import selectinload

from pulmogate.common.db.accounts import Role
from pulmogate.common.db.models import (
    Delivery,
    Instance,
    Job,
    JobLog,
    OutboxMessage,
    OutputObject,
    Series,
    utcnow,
)
from pulmogate.common.runtime import Context
from pulmogate.common.workers import GONE_AFTER_S, this_worker
from services.api.tests.conftest import ClientAs
from services.api.tests.rows import T0, MakeJob
from tests.fixtures.datasets import dicom_object, set_grey_pixels
from tests.fixtures.gateway import storescp
from tests.fixtures.infra import free_port

FINISHED = T0 + timedelta(seconds=20)


async def _job_with_files(ctx: Context, make_job: MakeJob, **fields: object) -> int:
    """A finished job whose input instance and two outputs exist in storage."""
    job_id = await make_job(
        outputs=[
            {
                "kind": "overlay",
                "sop_instance_uid": f"1.2.3.{id(fields)}.1",
                "sop_class_uid": "1.2",
                "series_uid": "1.2.3.9",
            },
            {
                "kind": "sr",
                "sop_instance_uid": f"1.2.3.{id(fields)}.2",
                "sop_class_uid": "1.2",
                "series_uid": "1.2.3.8",
            },
        ],
        **fields,
    )
    async with ctx.db.session() as session:
        job = await session.get(Job, job_id, options=[selectinload(Job.outputs)])
        assert job is not None
        for n, output in enumerate(job.outputs):
            path = ctx.storage.result_path(job_id, output.kind, output.sop_instance_uid)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"DICM{n}".encode())
            output.path = str(path)
        series = await session.get(Series, job.series_id)
        assert series is not None
        path = ctx.storage.instance_path(series.study_uid, series.series_uid, "1.2.3.4.5")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"input")
        session.add(
            Instance(
                series_id=series.id,
                sop_instance_uid=f"1.2.3.{job_id}.77",
                sop_class_uid="1.2",
                transfer_syntax_uid="1.2",
                path=str(path),
            )
        )
    return job_id


async def test_results_zip_holds_each_output_by_kind(
    client: httpx.AsyncClient, ctx: Context, make_job: MakeJob
) -> None:
    job_id = await _job_with_files(ctx, make_job)

    response = await client.get(f"/api/v1/jobs/{job_id}/results.zip")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert f"pulmogate-job-{job_id}.zip" in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == [
        f"job-{job_id}/overlay/0001.dcm",
        f"job-{job_id}/sr/0001.dcm",
    ]
    assert archive.read(f"job-{job_id}/overlay/0001.dcm") == b"DICM0"
    leftovers = list(Path(tempfile.gettempdir()).glob(f"pulmogate-job-{job_id}-*.zip"))
    assert leftovers == []  # the zip is built on disk and removed once sent


async def test_a_job_without_results_has_no_zip_and_cannot_be_resent(
    client: httpx.AsyncClient, make_job: MakeJob
) -> None:
    job_id = await make_job(status="rejected")

    zipped = await client.get(f"/api/v1/jobs/{job_id}/results.zip")
    resent = await client.post(f"/api/v1/jobs/{job_id}/resend")
    missing = await client.get("/api/v1/jobs/999999/results.zip")

    assert zipped.status_code == resent.status_code == 409
    assert zipped.json()["detail"] == f"job {job_id} has no results (status rejected)"
    assert resent.json()["detail"] == (
        f"job {job_id} has no results to send (status rejected); "
        f"POST /api/v1/jobs/{job_id}/reanalyse checks and analyses it again"
    )
    assert missing.status_code == 404


async def test_resend_restarts_each_delivery_and_stages_one_event_each(
    client: httpx.AsyncClient, ctx: Context, make_job: MakeJob
) -> None:
    job_id = await _job_with_files(
        ctx,
        make_job,
        finished_at=FINISHED,
        deliveries=[
            {
                "destination": {"name": "pacs", "host": "h", "port": 104, "ae_title": "PACS"},
                "status": "delivered",
                "attempts": 1,
            },
            {
                "destination": {"name": "ws", "host": "w", "port": 104, "ae_title": "WS"},
                "status": "failed",
                "attempts": 5,
                "last_error": "refused",
            },
        ],
    )

    response = await client.post(f"/api/v1/jobs/{job_id}/resend")

    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(body["destinations"]) == ["pacs", "ws"]
    async with ctx.db.session() as session:
        deliveries = (
            await session.scalars(select(Delivery).where(Delivery.job_id == job_id))
        ).all()
        job = await session.get(Job, job_id)
        events = (await session.scalars(select(OutboxMessage))).all()
    assert {(d.status, d.attempts, d.last_error) for d in deliveries} == {("pending", 0, None)}
    # The total time stays that of the first delivery; the resend is counted apart.
    assert job is not None and job.status == "delivering" and job.finished_at == FINISHED
    assert job.resend_count == 1 and job.resent_at is not None
    assert sorted(json.loads(e.payload)["delivery_id"] for e in events) == sorted(
        body["delivery_ids"]
    )
    assert {e.routing_key for e in events} == {"delivery.requested"}
    log = (await client.get(f"/api/v1/jobs/{job_id}/log")).json()
    assert log[-1]["message"].startswith("resend requested by ")


async def test_delete_removes_rows_and_files_and_refuses_a_running_job(
    client: httpx.AsyncClient, ctx: Context, make_job: MakeJob
) -> None:
    job_id = await _job_with_files(ctx, make_job)
    busy = await make_job(status="analysing")
    files = [p for p in ctx.storage.root.rglob("*") if p.is_file()]
    assert len(files) == 3

    deleted = await client.delete(f"/api/v1/jobs/{job_id}")
    refused = await client.delete(f"/api/v1/jobs/{busy}")
    again = await client.delete(f"/api/v1/jobs/{job_id}")

    assert deleted.status_code == 204
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        f"job {busy} is being analysed: delete it when the analysis has ended"
    )
    assert again.status_code == 404
    assert [p for p in ctx.storage.root.rglob("*") if p.is_file()] == []
    async with ctx.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Series)) == 1
        assert await session.scalar(select(func.count()).select_from(Instance)) == 0


async def test_echo_reports_a_live_storescp_and_a_closed_port(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    with storescp(tmp_path, aet="ECHOME") as (port, _folder):
        live = (
            await client.post(
                "/api/v1/destinations",
                json={"name": "live", "host": "127.0.0.1", "port": port, "ae_title": "ECHOME"},
            )
        ).json()
        dead = (
            await client.post(
                "/api/v1/destinations",
                json={"name": "dead", "host": "127.0.0.1", "port": free_port(), "ae_title": "X"},
            )
        ).json()

        ok = await client.post(f"/api/v1/destinations/{live['id']}/echo")
        failed = await client.post(f"/api/v1/destinations/{dead['id']}/echo")
        unknown = await client.post("/api/v1/destinations/424242/echo")

    assert ok.status_code == 200 and ok.json()["ok"] is True
    assert ok.json()["message"] == f"C-ECHO to ECHOME@127.0.0.1:{port} succeeded"
    assert failed.status_code == 200 and failed.json()["ok"] is False
    assert "failed" in failed.json()["message"]
    assert unknown.status_code == 404


async def test_an_id_beyond_the_database_integer_range_is_a_422_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    huge = 35224294826891964

    responses = [
        await client.get(f"/api/v1/jobs/{huge}"),
        await client.delete(f"/api/v1/jobs/{huge}"),
        await client.post(f"/api/v1/destinations/{huge}/echo"),
        await client.post("/api/v1/rules", json={"name": "big", "ttl_days": 2**40}),
    ]

    assert [r.status_code for r in responses] == [422] * 4
    assert "out of range for the database" in responses[0].json()["detail"]


async def _events(ctx: Context) -> list[tuple[str, dict[str, object]]]:
    async with ctx.db.session() as session:
        rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    return [(r.routing_key, json.loads(r.payload)) for r in rows]


async def _clear_outbox(ctx: Context) -> None:
    async with ctx.db.session() as session:
        await session.execute(delete(OutboxMessage))


async def test_each_state_has_a_defined_answer_to_resend_reanalyse_and_delete(
    client: httpx.AsyncClient, ctx: Context, make_job: MakeJob
) -> None:
    """Queued, analysing by a live process, analysing by a gone one, delivering with a
    delivery being sent, rejected, done: 200/202/204 or a 409 that says why."""
    now = utcnow()
    gone = now - timedelta(seconds=GONE_AFTER_S + 5)
    sending = {
        "destination": {"name": "pacs-s", "host": "h", "port": 104, "ae_title": "PACS"},
        "status": "sending",
        "attempts": 1,
    }
    jobs = {
        "queued": await make_job(status="queued"),
        "live": await make_job(status="analysing", worker=this_worker(), worker_seen_at=now),
        "gone": await make_job(status="analysing", worker="elsewhere/1:42:ab", worker_seen_at=gone),
        "sending": await _job_with_files(ctx, make_job, status="delivering", deliveries=[sending]),
        "rejected": await make_job(status="rejected", reason="2 slices, at least 16 are needed"),
        "done": await _job_with_files(
            ctx,
            make_job,
            finished_at=FINISHED,
            deliveries=[
                {
                    "destination": {"name": "pacs-d", "host": "h", "port": 104, "ae_title": "P"},
                    "status": "delivered",
                }
            ],
        ),
    }
    await _clear_outbox(ctx)

    resend = {k: await client.post(f"/api/v1/jobs/{j}/resend") for k, j in jobs.items()}
    reanalyse = {k: await client.post(f"/api/v1/jobs/{j}/reanalyse") for k, j in jobs.items()}

    assert {k: r.status_code for k, r in resend.items()} == {
        "queued": 409,
        "live": 409,
        "gone": 409,
        "sending": 409,
        "rejected": 409,
        "done": 200,
    }
    assert resend["queued"].json()["detail"] == (
        f"job {jobs['queued']} is queued for analysis: its results are sent when the analysis ends"
    )
    assert "is being analysed by " in resend["live"].json()["detail"]
    assert "analysis was interrupted (its process is gone)" in resend["gone"].json()["detail"]
    assert "results are being sent" in resend["sending"].json()["detail"]
    assert "2 slices, at least 16 are needed" in resend["rejected"].json()["detail"]
    assert {k: r.status_code for k, r in reanalyse.items()} == {
        "queued": 409,
        "live": 409,
        "gone": 202,
        "sending": 409,
        "rejected": 202,
        "done": 202,
    }
    assert reanalyse["rejected"].json() == {
        "job_id": jobs["rejected"],
        "status": "rejected",
        "instances": 120,
    }
    requested = [e for e in await _events(ctx) if e[0] == "job.reanalysis_requested"]
    assert sorted(int(str(e[1]["job_id"])) for e in requested) == sorted(
        jobs[k] for k in ("gone", "rejected", "done")
    )
    async with ctx.db.session() as session:
        lines = list(
            await session.scalars(select(JobLog.message).where(JobLog.job_id == jobs["rejected"]))
        )
    assert lines == ["re-analysis requested by admin (120 instances)"]

    deleted = {k: (await client.delete(f"/api/v1/jobs/{j}")).status_code for k, j in jobs.items()}
    assert deleted == {
        "queued": 204,
        "live": 409,
        "gone": 204,
        "sending": 204,
        "rejected": 204,
        "done": 204,
    }


def _grey_image(path: Path) -> None:
    """A small grey secondary capture, as the overlay pictures are stored."""
    ds = dicom_object(
        SecondaryCaptureImageStorage, study_uid="1.2.3", series_uid="1.2.3.9", modality="OT"
    )
    set_grey_pixels(ds, np.arange(64, dtype=np.uint8).reshape(8, 8))
    ds.save_as(path, enforce_file_format=True)


async def test_a_jobs_picture_is_served_as_a_png_to_every_role_and_nothing_else_is(
    ctx: Context,
    make_job: MakeJob,
    client_as: ClientAs,
    anonymous: httpx.AsyncClient,
) -> None:
    job_id = await _job_with_files(ctx, make_job)
    other_job = await _job_with_files(ctx, make_job)
    viewer = await client_as(Role.VIEWER)
    detail = (await viewer.get(f"/api/v1/jobs/{job_id}")).json()
    overlay, sr = (o["id"] for o in detail["outputs"])
    async with ctx.db.session() as session:
        row = await session.get(OutputObject, overlay)
        assert row is not None and row.kind == "overlay"
        _grey_image(Path(row.path))
        other = await session.scalar(
            select(OutputObject.id).where(OutputObject.job_id == other_job)
        )

    shown = await viewer.get(f"/api/v1/jobs/{job_id}/outputs/{overlay}/preview.png")
    not_a_picture = await viewer.get(f"/api/v1/jobs/{job_id}/outputs/{sr}/preview.png")
    of_another_job = await viewer.get(f"/api/v1/jobs/{job_id}/outputs/{other}/preview.png")
    no_job = await viewer.get(f"/api/v1/jobs/999999/outputs/{overlay}/preview.png")
    refused = await anonymous.get(f"/api/v1/jobs/{job_id}/outputs/{overlay}/preview.png")

    assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    assert shown.content.startswith(b"\x89PNG") and "private" in shown.headers["cache-control"]
    for answer in (not_a_picture, of_another_job):
        assert (answer.status_code, answer.json()["detail"]) == (404, "no such image")
    assert (no_job.status_code, no_job.json()["detail"]) == (404, "job 999999 not found")
    assert refused.status_code == 401
