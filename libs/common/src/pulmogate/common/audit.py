"""The audit log: every change a user makes becomes one row in the same transaction."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common.db.accounts import AuditEntry


def record(
    session: AsyncSession,
    *,
    user_id: int | None,
    username: str,
    action: str,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Stage an audit entry (``action`` like ``rule.create``; ``target`` like ``rule 3``).

    Callers never pass passwords, tokens or patient data in ``details``.
    """
    entry = AuditEntry(
        user_id=user_id,
        username=username,
        action=action,
        target=target[:200],
        details=details or {},
    )
    session.add(entry)
    return entry
