"""Issuing and revoking bearer API tokens (the API, the CLI and the demo share this)."""

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common import audit
from pulmogate.common.credentials import new_api_token, sha256_hex
from pulmogate.common.db.accounts import ApiToken, User
from pulmogate.common.db.models import utcnow


async def issue_token(
    session: AsyncSession,
    user: User,
    name: str,
    *,
    expires_in: timedelta | None = None,
    actor_id: int | None = None,
    actor_name: str | None = None,
) -> tuple[ApiToken, str]:
    """A new token for ``user`` (the row, and the secret that is shown once), audited."""
    secret, prefix = new_api_token()
    now = utcnow()
    token = ApiToken(
        name=name,
        user_id=user.id,
        token_hash=sha256_hex(secret),
        prefix=prefix,
        created_at=now,
        expires_at=now + expires_in if expires_in else None,
    )
    session.add(token)
    await session.flush()
    audit.record(
        session,
        user_id=actor_id if actor_name is not None else user.id,
        username=actor_name if actor_name is not None else user.username,
        action="token.create",
        target=f"token {token.id} {prefix}… of {user.username}",
        details={
            "name": name,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        },
    )
    return token, secret


async def revoke_user_tokens(session: AsyncSession, user_id: int) -> int:
    """Revoke every live token of a user (a new password: old credentials stop working);
    how many were revoked. The caller commits and audits."""
    result = await session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
