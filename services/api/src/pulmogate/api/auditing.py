"""Stage an audit entry for the calling user in the session that commits the change."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.api.auth import CurrentUser
from pulmogate.common import audit


def audit_change(
    session: AsyncSession,
    user: CurrentUser,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Record ``action`` on ``target`` by ``user``; it commits (or rolls back) with the change."""
    audit.record(
        session, user_id=user.id, username=user.name, action=action, target=target, details=details
    )
