"""Pick the routing rule for a series: rules from the DB, matching from pulmogate.common.routing."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common.db.models import RoutingRule, Series
from pulmogate.common.db.operations import Upload
from pulmogate.common.routing import SeriesSource, describe_no_match, first_match


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


async def rule_for(session: AsyncSession, series: Series) -> tuple[RoutingRule | None, str]:
    """The winning rule (or None) and, when none wins, the sentence saying why.

    An upload that named a rule is routed by that rule (if it is still enabled).
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
    source = source_of(series)
    rule = first_match(await enabled_rules(session), source)
    return rule, "" if rule is not None else describe_no_match(source)
