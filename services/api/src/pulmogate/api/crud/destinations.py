"""Destinations: list, read, create, update, delete (refused while rules or deliveries use one)."""

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.api.errors import Conflict, InvalidField, NotFound
from pulmogate.api.schemas import DestinationCreate, DestinationUpdate
from pulmogate.common.db.models import Delivery, Destination, RoutingRule, RuleDestination


async def list_destinations(session: AsyncSession) -> Sequence[Destination]:
    """All destinations by name."""
    return (await session.scalars(select(Destination).order_by(Destination.name))).all()


async def get_destination(session: AsyncSession, destination_id: int) -> Destination:
    """One destination, or NotFound."""
    destination = await session.get(Destination, destination_id)
    if destination is None:
        raise NotFound(f"destination {destination_id} not found")
    return destination


async def _check_name_free(session: AsyncSession, name: str, exclude_id: int | None = None) -> None:
    query = select(Destination.id).where(Destination.name == name)
    if exclude_id is not None:
        query = query.where(Destination.id != exclude_id)
    if (await session.scalar(query)) is not None:
        raise Conflict(f"a destination named {name!r} already exists")


async def _commit(session: AsyncSession, name: str) -> None:
    """Commit; a unique-name race still ends as a 409."""
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(f"a destination named {name!r} already exists") from exc


async def create_destination(session: AsyncSession, data: DestinationCreate) -> Destination:
    """Store a new destination."""
    await _check_name_free(session, data.name)
    destination = Destination(**data.model_dump())
    session.add(destination)
    await _commit(session, data.name)
    return destination


async def update_destination(
    session: AsyncSession, destination_id: int, data: DestinationUpdate
) -> Destination:
    """Change the given fields of a destination."""
    destination = await get_destination(session, destination_id)
    changes = data.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None:
            raise InvalidField(field, f"{field} cannot be null")
    if "name" in changes:
        await _check_name_free(session, changes["name"], exclude_id=destination_id)
    for field, value in changes.items():
        setattr(destination, field, value)
    await _commit(session, destination.name)
    return destination


async def delete_destination(session: AsyncSession, destination_id: int) -> None:
    """Delete a destination no rule sends to and no delivery remembers."""
    destination = await get_destination(session, destination_id)
    rule_names = (
        await session.scalars(
            select(RoutingRule.name)
            .join(RuleDestination, RuleDestination.rule_id == RoutingRule.id)
            .where(RuleDestination.destination_id == destination_id)
            .order_by(RoutingRule.name)
        )
    ).all()
    if rule_names:
        raise Conflict(
            f"destination {destination.name!r} is used by rule(s) {', '.join(rule_names)}; "
            "remove it from them first"
        )
    deliveries = await session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.destination_id == destination_id)
    )
    if deliveries:
        raise Conflict(
            f"destination {destination.name!r} has {deliveries} deliveries on record; "
            "disable it (enabled=false) to keep their history"
        )
    await session.delete(destination)
    await session.commit()
