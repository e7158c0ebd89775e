"""Pick the routing rule for a series: rules from the DB, matching from pulmogate.common.routing.

Matching runs in a worker thread on snapshots of the rules: the description filters run on
the ``regex`` engine, which releases the GIL, with a time limit (``RULE_REGEX_TIMEOUT_MS``),
so a pathological filter costs at most that per filter and never stalls the event loop.
"""

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common.db.models import RoutingRule, Series
from pulmogate.common.db.operations import Upload
from pulmogate.common.routing import RuleSnapshot, SeriesSource, choose


def source_of(series: Series) -> SeriesSource:
    """The attributes a rule is matched against, from the series row."""
    return SeriesSource(
        peer_ip=series.peer_ip or "",
        calling_ae=series.calling_ae or "",
        study_description=series.study_description or "",
        series_description=series.series_description or "",
    )


async def enabled_rules(session: AsyncSession) -> list[RoutingRule]:
    """Enabled rules in matching order."""
    query = (
        select(RoutingRule)
        .where(RoutingRule.enabled.is_(True))
        .order_by(RoutingRule.priority, RoutingRule.id)
    )
    return list((await session.scalars(query)).all())


async def rule_for(
    session: AsyncSession, series: Series, *, timeout_s: float
) -> tuple[RoutingRule | None, str]:
    """The winning rule (or None) and, when none wins, the sentence saying why.

    An upload that named a rule is routed by that rule (if it is still enabled).
    ``timeout_s`` bounds each description filter (``rule_regex_timeout_ms`` of the settings).
    """
    chosen = await session.scalar(
        select(RoutingRule)
        .join(Upload, Upload.rule_id == RoutingRule.id)
        .where(Upload.series_id == series.id)
    )
    if chosen is not None:
        if chosen.enabled:
            return chosen, ""
        return None, f"the rule {chosen.name!r} chosen for this upload is disabled"
    rules = {rule.id: rule for rule in await enabled_rules(session)}
    snapshots = [RuleSnapshot.of(rule) for rule in rules.values()]
    source = source_of(series)
    winner, why = await asyncio.to_thread(lambda: choose(snapshots, source, timeout_s))
    return (rules[winner.id], "") if winner is not None else (None, why)
