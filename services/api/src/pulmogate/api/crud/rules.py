"""Routing rules: list, read, create, update, delete; destination ids must exist."""

import asyncio
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.api.errors import Conflict, InvalidField, NotFound
from pulmogate.api.schemas import RuleCreate, RuleUpdate
from pulmogate.common.db.models import Destination, RoutingRule
from pulmogate.common.rule_regex import probe_refusal

FILTER_FIELDS = ("study_description_filter", "series_description_filter")

REQUIRED_ON_UPDATE = frozenset(
    {
        "name",
        "enabled",
        "priority",
        "study_description_filter",
        "series_description_filter",
        "ttl_days",
        "failure_notices",
        "destination_ids",
    }
)


async def list_rules(session: AsyncSession) -> Sequence[RoutingRule]:
    """All rules in matching order (priority, then name)."""
    query = select(RoutingRule).order_by(RoutingRule.priority, RoutingRule.name)
    return (await session.scalars(query)).all()


async def get_rule(session: AsyncSession, rule_id: int) -> RoutingRule:
    """One rule, or NotFound."""
    rule = await session.get(RoutingRule, rule_id)
    if rule is None:
        raise NotFound(f"rule {rule_id} not found")
    return rule


async def _destinations(session: AsyncSession, ids: list[int]) -> list[Destination]:
    """The destinations with these ids, in the given order; InvalidField names unknown ones."""
    wanted = list(dict.fromkeys(ids))
    found = {
        d.id: d
        for d in (await session.scalars(select(Destination).where(Destination.id.in_(wanted))))
    }
    unknown = [i for i in wanted if i not in found]
    if unknown:
        raise InvalidField(
            "destination_ids", f"unknown destination id(s): {', '.join(map(str, unknown))}"
        )
    return [found[i] for i in wanted]


async def _check_name_free(session: AsyncSession, name: str, exclude_id: int | None = None) -> None:
    query = select(RoutingRule.id).where(RoutingRule.name == name)
    if exclude_id is not None:
        query = query.where(RoutingRule.id != exclude_id)
    if (await session.scalar(query)) is not None:
        raise Conflict(f"a rule named {name!r} already exists")


async def _commit(session: AsyncSession, name: str) -> None:
    """Commit; a unique-name race still ends as a 409."""
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(f"a rule named {name!r} already exists") from exc


async def check_filter_speed(data: RuleCreate | RuleUpdate, timeout_s: float) -> None:
    """422 for a description filter that is too slow on the probe inputs (in a thread)."""
    for field in FILTER_FIELDS:
        pattern = getattr(data, field, None)
        if pattern:
            reason = await asyncio.to_thread(probe_refusal, pattern, timeout_s)
            if reason is not None:
                raise InvalidField(field, reason)


async def create_rule(session: AsyncSession, data: RuleCreate) -> RoutingRule:
    """Store a new rule with its destinations."""
    await _check_name_free(session, data.name)
    destinations = await _destinations(session, data.destination_ids)
    rule = RoutingRule(**data.model_dump(exclude={"destination_ids"}))
    rule.destinations = destinations
    session.add(rule)
    await _commit(session, data.name)
    return await get_rule(session, rule.id)


async def update_rule(session: AsyncSession, rule_id: int, data: RuleUpdate) -> RoutingRule:
    """Change the given fields of a rule (null clears source_ip / source_ae_title)."""
    rule = await get_rule(session, rule_id)
    changes = data.model_dump(exclude_unset=True)
    for field in REQUIRED_ON_UPDATE & changes.keys():
        if changes[field] is None:
            raise InvalidField(field, f"{field} cannot be null")
    if "name" in changes:
        await _check_name_free(session, changes["name"], exclude_id=rule_id)
    if "destination_ids" in changes:
        rule.destinations = await _destinations(session, changes.pop("destination_ids"))
    for field, value in changes.items():
        setattr(rule, field, value)
    await _commit(session, rule.name)
    return rule


async def delete_rule(session: AsyncSession, rule_id: int) -> None:
    """Delete a rule (its jobs keep their history; their rule_id becomes null)."""
    rule = await get_rule(session, rule_id)
    await session.delete(rule)
    await session.commit()
