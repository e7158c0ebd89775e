"""One lifecycle: every job and delivery status is set in pulmogate.common.lifecycle, and the
router's delivery of new results and an operator's resend plan deliveries alike."""

import ast
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pulmogate.api.crud.job_actions import resend
from pulmogate.common import lifecycle
from pulmogate.common.db.models import (
    Delivery,
    DeliveryStatus,
    Destination,
    Job,
    JobStatus,
    OutboxMessage,
    OutputObject,
    RoutingRule,
    RuleDestination,
    Series,
    SeriesStatus,
)
from pulmogate.common.events import AnalysisFinished, DeliveryRequested
from pulmogate.common.runtime import Context, close_context, open_context
from pulmogate.common.settings import Settings
from pulmogate.router.service import RouterService
from tests.fixtures.infra import clear_tables

ROOT = Path(__file__).resolve().parents[1]
LIFECYCLE = ROOT / "libs/common/src/pulmogate/common/lifecycle.py"
STATUS_ENUMS = {"JobStatus", "DeliveryStatus"}
MODELS = {"Job", "Delivery"}


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _owner(target: ast.Attribute) -> str:
    """What the attribute is of, lower case (``job`` of ``job.status``, ``delivery`` of
    ``self.delivery.status``)."""
    value = target.value
    if isinstance(value, ast.Attribute):
        return value.attr.lower()
    return value.id.lower() if isinstance(value, ast.Name) else ""


def status_writes(source: str) -> list[int]:
    """Lines of ``source`` that set a job's or a delivery's status: ``x.status = ...`` (by a
    JobStatus / DeliveryStatus value, or on a name that reads as a job or a delivery),
    ``Job(status=...)`` / ``Delivery(status=...)``, ``.values(status=...)`` of a job or
    delivery update, and ``setattr(x, "status", ...)``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == "status":
                    about_job = any(w in _owner(target) for w in ("job", "deliver"))
                    if about_job or _names(node.value or ast.Pass()) & STATUS_ENUMS:
                        lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            keywords = {k.arg: k.value for k in node.keywords}
            if called in MODELS and "status" in keywords:
                lines.append(node.lineno)
            elif called == "values" and "status" in keywords:
                if (_names(func) & MODELS) or (_names(keywords["status"]) & STATUS_ENUMS):
                    lines.append(node.lineno)
            elif called == "setattr" and len(node.args) > 1:
                arg = node.args[1]
                if isinstance(arg, ast.Constant) and arg.value == "status":
                    lines.append(node.lineno)
    return sorted(lines)


def test_the_status_check_finds_each_way_of_setting_a_job_or_delivery_status() -> None:
    source = "\n".join(
        [
            "job.status = JobStatus.DONE",  # 1
            "self.delivery.status = 'failed'",  # 2
            "row.status = DeliveryStatus.SENDING",  # 3
            "Delivery(job_id=1, destination_id=2, status=DeliveryStatus.PENDING)",  # 4
            "update(Job).where(Job.id == 1).values(status=JobStatus.QUEUED)",  # 5
            "setattr(job, 'status', 'done')",  # 6
            "series.status = SeriesStatus.ROUTED",  # 7: a series, not a job
            "update(Series).values(status=SeriesStatus.COMPLETE)",  # 8
            "self.status = status",  # 9: an exception's own field
            "if job.status == JobStatus.DONE: pass",  # 10: a read
        ]
    )
    assert status_writes(source) == [1, 2, 3, 4, 5, 6]


def test_no_module_but_the_lifecycle_sets_a_job_or_delivery_status() -> None:
    sources = sorted([*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")])
    assert LIFECYCLE in sources and len(sources) > 100
    found = {
        str(path.relative_to(ROOT)): lines
        for path in sources
        if path != LIFECYCLE and (lines := status_writes(path.read_text()))
    }
    assert found == {}
    assert status_writes(LIFECYCLE.read_text())  # and the lifecycle does set them


@pytest.fixture(params=["sqlite", "postgres"])
async def ctx(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str
) -> AsyncIterator[Context]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}" if request.param == "sqlite" else pg_url
    settings = Settings(data_dir=tmp_path, database_url=url, broker_url="memory://")
    context = await open_context(settings, migrate=True)
    await clear_tables(context.db)
    yield context
    await close_context(context)


async def _analysed_job(ctx: Context) -> tuple[int, dict[str, int], int]:
    """An ANALYSED job with results, its rule's destinations A, B (enabled) and OFF."""
    async with ctx.db.session() as session:
        destinations = {
            name: Destination(
                name=name, host="127.0.0.1", port=104, ae_title=name, enabled=name != "OFF"
            )
            for name in ("A", "B", "OFF")
        }
        rule = RoutingRule(name="chest")
        series = Series(
            series_uid="2.25.1", study_uid="2.25.1.0", status=SeriesStatus.ROUTED, instance_count=20
        )
        session.add_all([*destinations.values(), rule, series])
        await session.flush()
        session.add_all(
            RuleDestination(rule_id=rule.id, destination_id=d.id) for d in destinations.values()
        )
        job = Job(
            series_id=series.id,
            rule_id=rule.id,
            status=JobStatus.ANALYSED,  # as inference leaves it
            analysed_instance_count=20,
        )
        session.add(job)
        await session.flush()
        session.add(
            OutputObject(
                job_id=job.id,
                kind="overlay",
                sop_instance_uid="2.25.2",
                sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
                series_uid="2.25.3",
                path="/results/overlay.dcm",
            )
        )
        return job.id, {n: d.id for n, d in destinations.items()}, rule.id


async def _deliveries(ctx: Context, job_id: int) -> dict[int, tuple[Any, ...]]:
    async with ctx.db.session() as session:
        rows = await session.scalars(select(Delivery).where(Delivery.job_id == job_id))
        return {
            d.destination_id: (d.id, d.status, d.attempts, d.last_error, d.delivered_at)
            for d in rows
        }


async def _announced(ctx: Context) -> list[int]:
    async with ctx.db.session() as session:
        payloads = await session.scalars(
            select(OutboxMessage.payload)
            .where(OutboxMessage.routing_key == DeliveryRequested.routing_key)
            .order_by(OutboxMessage.id)
        )
        return [DeliveryRequested.model_validate_json(p).delivery_id for p in payloads]


async def test_the_router_and_a_resend_plan_deliveries_with_the_same_function(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, dest, rule_id = await _analysed_job(ctx)
    calls: list[tuple[int, list[int], bool]] = []
    planned_by_the_lifecycle = lifecycle.plan_deliveries

    async def recorded(session: Any, job: Job, destinations: Any, **kw: Any) -> list[Delivery]:
        calls.append((job.id, [d.id for d in destinations], kw.get("every_existing", False)))
        return await planned_by_the_lifecycle(session, job, destinations, **kw)

    monkeypatch.setattr(lifecycle, "plan_deliveries", recorded)  # observed, not replaced

    router = RouterService()
    router.ctx = ctx
    await router.on_event(AnalysisFinished(job_id=job_id, status=JobStatus.ANALYSED))
    first = await _deliveries(ctx, job_id)
    assert calls == [(job_id, [dest["A"], dest["B"]], False)]
    assert set(first) == {dest["A"], dest["B"]}  # the disabled one gets none
    assert {row[1:] for row in first.values()} == {(DeliveryStatus.PENDING, 0, None, None)}
    assert await _announced(ctx) == sorted(row[0] for row in first.values())

    # The sender's outcome: A delivered, B refused for good; then the rule gains C.
    async with ctx.db.session() as session:
        job = await session.get(Job, job_id)
        assert job is not None and job.status == JobStatus.DELIVERING
        for delivery in await session.scalars(select(Delivery).where(Delivery.job_id == job_id)):
            lifecycle.start_sending(delivery)
            if delivery.destination_id == dest["A"]:
                lifecycle.delivered(delivery)
            else:
                lifecycle.give_up(delivery, "association rejected")
        await lifecycle.finish_when_delivered(session, job, "sender")
        assert job.status == JobStatus.FAILED
        added = Destination(name="C", host="127.0.0.1", port=104, ae_title="C")
        session.add(added)
        await session.flush()
        session.add(RuleDestination(rule_id=rule_id, destination_id=added.id))
        dest["C"] = added.id

    async with ctx.db.sessions() as session:
        answer = await resend(session, job_id, "operator")
    again = await _deliveries(ctx, job_id)
    assert calls[1] == (job_id, [dest["A"], dest["B"], dest["C"]], True)
    assert len(calls) == 2
    # The same rows back to where the router's planning puts them, and one for C.
    assert {d: again[d][0] for d in first} == {d: row[0] for d, row in first.items()}
    assert set(again) == {dest["A"], dest["B"], dest["C"]}
    assert {row[1:] for row in again.values()} == {(DeliveryStatus.PENDING, 0, None, None)}
    assert answer.delivery_ids == sorted(row[0] for row in again.values())
    assert (await _announced(ctx))[2:] == answer.delivery_ids
    async with ctx.db.session() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.resend_count) == (JobStatus.DELIVERING, 1)
