"""Retention: jobs older than their rule's ttl_days lose their files and identifiers, not their
history (SQLite and Postgres)."""

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from pulmogate.common.db.models import (
    Instance,
    Job,
    JobLog,
    OutputObject,
    RoutingRule,
    Series,
    utcnow,
)
from pulmogate.common.phi import patient_columns
from pulmogate.common.runtime import Context
from pulmogate.router.janitor import purge_expired
from services.router.tests.conftest import add_series

PATIENT_COLUMNS = patient_columns(Series.__table__.columns.keys())


async def _job(ctx: Context, *, rule_ttl: int | None, age_days: float, status: str = "done") -> int:
    """A finished job with real input and output files in storage."""
    series = await add_series(ctx, slices=2)
    now = utcnow()
    async with ctx.db.session() as session:
        rule_id = None
        if rule_ttl is not None:
            rule = RoutingRule(name=f"r{series.id}", ttl_days=rule_ttl)
            session.add(rule)
            await session.flush()
            rule_id = rule.id
        row = await session.get(Series, series.id)
        assert row is not None
        for name in PATIENT_COLUMNS:
            setattr(row, name, f"{name[:6]}1")
        row.patient_name, row.patient_id, row.accession_number = "PHANTOM^ONE", "PH-1", "ACC1"
        row.study_date = "20260101"
        job = Job(
            series_id=series.id,
            rule_id=rule_id,
            status=status,
            prediction="No CT signs of pneumonia",
            created_at=now - timedelta(days=age_days, hours=1),
            finished_at=now - timedelta(days=age_days),
        )
        session.add(job)
        await session.flush()
        for instance in await session.scalars(
            select(Instance).where(Instance.series_id == series.id)
        ):
            path = ctx.storage.instance_path(
                row.study_uid, row.series_uid, instance.sop_instance_uid
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"input")
            instance.path = str(path)
        out = ctx.storage.result_path(job.id, "overlay", f"{row.series_uid}.9")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"output")
        session.add(
            OutputObject(
                job_id=job.id,
                kind="overlay",
                sop_instance_uid=f"{row.series_uid}.9",
                sop_class_uid="1.2",
                series_uid=f"{row.series_uid}.8",
                path=str(out),
            )
        )
        return job.id


def _files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file())


async def test_old_jobs_are_purged_by_their_rules_ttl_and_keep_their_history(
    context: Context,
) -> None:
    old = await _job(context, rule_ttl=7, age_days=8)
    young = await _job(context, rule_ttl=7, age_days=6)
    forever = await _job(context, rule_ttl=0, age_days=400)
    default_ttl = await _job(context, rule_ttl=None, age_days=31)
    running = await _job(context, rule_ttl=1, age_days=5, status="analysing")
    assert _files(context.storage.root) == 5 * 3

    purged = await purge_expired(context)
    again = await purge_expired(context)

    assert sorted(purged) == sorted([old, default_ttl]) and again == []
    assert _files(context.storage.root) == 3 * 3
    assert not (context.storage.results_folder(old)).exists()
    async with context.db.session() as session:
        job = await session.get(Job, old)
        assert job is not None and job.purged_at is not None
        assert job.status == "done" and job.prediction == "No CT signs of pneumonia"
        series = await session.get(Series, job.series_id)
        assert series is not None
        assert (series.patient_name, series.patient_id, series.accession_number) == ("", "", "")
        assert series.study_date == "" and series.series_uid and series.instance_count == 2
        assert {name: getattr(series, name) for name in PATIENT_COLUMNS} == dict.fromkeys(
            PATIENT_COLUMNS, ""
        )
        left = await session.scalar(
            select(func.count()).select_from(Instance).where(Instance.series_id == job.series_id)
        )
        assert left == 0
        last = await session.scalar(
            select(JobLog.message).where(JobLog.job_id == old).order_by(JobLog.id.desc())
        )
        assert last == "purged by retention (7 days): 3 stored files deleted"
        for kept in (young, forever, running):
            row = await session.get(Job, kept)
            assert row is not None and row.purged_at is None
            assert row.series.patient_birth_date and row.series.study_time
