"""API tokens: issue, list and revoke (own tokens; admins see and revoke everyone's)."""

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.api.account_schemas import TokenCreate, TokenCreated, TokenOut
from pulmogate.api.auditing import audit_change
from pulmogate.api.auth import CurrentUser
from pulmogate.api.errors import NotFound
from pulmogate.common.api_tokens import issue_token
from pulmogate.common.db.accounts import ApiToken, Role, User
from pulmogate.common.db.models import utcnow


def token_out(token: ApiToken) -> TokenOut:
    """The listing view of a token (no secret)."""
    return TokenOut(
        id=token.id,
        name=token.name,
        prefix=token.prefix,
        username=token.user.username,
        created_at=token.created_at,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


async def create_token(
    session: AsyncSession, data: TokenCreate, actor: CurrentUser
) -> TokenCreated:
    """A new token for the caller, with the same role; the secret is returned this once."""
    user = await session.get(User, actor.id) if actor.id is not None else None
    if user is None:
        raise NotFound("the calling user no longer exists")
    expires = timedelta(days=data.expires_in_days) if data.expires_in_days else None
    token, secret = await issue_token(session, user, data.name, expires_in=expires)
    await session.commit()
    await session.refresh(token, ["user"])
    return TokenCreated(**token_out(token).model_dump(), token=secret)


async def list_tokens(session: AsyncSession, actor: CurrentUser) -> list[TokenOut]:
    """The caller's tokens, or every token for an admin; newest first."""
    query = select(ApiToken).order_by(ApiToken.id.desc())
    if actor.role != Role.ADMIN:
        query = query.where(ApiToken.user_id == actor.id)
    return [token_out(t) for t in (await session.scalars(query)).all()]


async def revoke_token(session: AsyncSession, token_id: int, actor: CurrentUser) -> None:
    """Revoke a token at once (idempotent); others' tokens look absent to non-admins."""
    token = await session.get(ApiToken, token_id)
    if token is None or (actor.role != Role.ADMIN and token.user_id != actor.id):
        raise NotFound(f"token {token_id} not found")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit_change(
            session,
            actor,
            "token.revoke",
            f"token {token.id} {token.prefix}… of {token.user.username}",
            {"name": token.name},
        )
        await session.commit()
