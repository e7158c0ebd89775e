"""Who may send images: the receiver's source policy and the disk watermark.

``accept_from = rules`` (default): an association that proposes image storage is accepted
only from a calling AE title / IP address pair some enabled routing rule names (a rule that
names neither accepts every sender). ``any``: every sender is accepted, and a series no rule
routes ends as ``ignored`` with NO_MATCHING_RULE. Associations that propose only
verification or query/retrieve are accepted from anyone; on them a sender the policy does
not name gets C-ECHO only: C-STORE, C-FIND, C-MOVE and C-GET answer 0x0124 (not authorised).
"""

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from pulmogate.common.db.models import RoutingRule
from pulmogate.common.db.session import Database
from pulmogate.common.routing import ae_matches, ip_matches

VERIFICATION = "1.2.840.10008.1.1"
QUERY_RETRIEVE_PREFIX = "1.2.840.10008.5.1.4.1.2."


@dataclass(frozen=True)
class SourcePattern:
    """The sender fields of one enabled rule (None = any)."""

    name: str
    source_ip: str | None
    source_ae_title: str | None


async def enabled_sources(db: Database) -> list[SourcePattern]:
    """The sender patterns of every enabled rule."""
    async with db.sessions() as session:
        rows = await session.execute(
            select(RoutingRule.name, RoutingRule.source_ip, RoutingRule.source_ae_title).where(
                RoutingRule.enabled.is_(True)
            )
        )
        return [SourcePattern(*row) for row in rows]


def refusal(patterns: Iterable[SourcePattern], calling_ae: str, peer_ip: str) -> str | None:
    """Why ``calling_ae``/``peer_ip`` may not send under ``rules``, or None if a rule names it."""
    patterns = list(patterns)
    for p in patterns:
        if ae_matches(p.source_ae_title, calling_ae) and ip_matches(p.source_ip, peer_ip):
            return None
    if not patterns:
        return (
            f"calling AE {calling_ae!r} from {peer_ip}: no enabled routing rule (accept_from=rules)"
        )
    return (
        f"calling AE {calling_ae!r} from {peer_ip} is not named by any enabled routing rule "
        "(accept_from=rules)"
    )


def brings_images(abstract_syntaxes: Iterable[str]) -> bool:
    """True unless the association only verifies or queries/retrieves (C-GET included)."""
    syntaxes = [str(s) for s in abstract_syntaxes]
    if any(s.startswith(QUERY_RETRIEVE_PREFIX) for s in syntaxes):
        return False
    return any(s != VERIFICATION for s in syntaxes)
