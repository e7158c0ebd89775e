"""Users: list, read, create, change role/active/password, delete; one admin always remains."""

import asyncio
from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.api.account_schemas import UserCreate, UserUpdate
from pulmogate.api.auditing import audit_change
from pulmogate.api.auth import CurrentUser
from pulmogate.api.errors import Conflict, InvalidField, NotFound
from pulmogate.common import password_policy
from pulmogate.common.api_tokens import revoke_user_tokens
from pulmogate.common.credentials import hash_password
from pulmogate.common.db.accounts import Role, User, UserSession
from pulmogate.common.users import UserExists, create_user


async def list_users(session: AsyncSession) -> Sequence[User]:
    """All users by name."""
    return (await session.scalars(select(User).order_by(User.username))).all()


async def get_user(session: AsyncSession, user_id: int) -> User:
    """One user, or NotFound."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


async def add_user(session: AsyncSession, data: UserCreate, actor: CurrentUser) -> User:
    """Create a user (409 if the name is taken, 422 for a password that is the username)."""
    reason = password_policy.problem(data.password, data.username)
    if reason is not None:
        raise InvalidField("password", reason)
    try:
        user = await create_user(
            session,
            data.username,
            data.password,
            data.role,
            actor_id=actor.id,
            actor_name=actor.name,
        )
        await session.commit()
    except (UserExists, IntegrityError) as exc:
        raise Conflict(f"user {data.username!r} already exists") from exc
    return user


async def _other_active_admins(session: AsyncSession, user_id: int) -> int:
    query = (
        select(func.count())
        .select_from(User)
        .where(User.role == Role.ADMIN, User.active.is_(True), User.id != user_id)
    )
    return int(await session.scalar(query) or 0)


async def _keep_an_admin(session: AsyncSession, user: User, what: str) -> None:
    if user.role == Role.ADMIN and user.active and not await _other_active_admins(session, user.id):
        raise Conflict(f"cannot {what} {user.username}: it is the last active admin")


async def update_user(
    session: AsyncSession, user_id: int, data: UserUpdate, actor: CurrentUser
) -> User:
    """Change role, active flag or password; deactivation and new passwords end sessions."""
    user = await get_user(session, user_id)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    revoke_tokens = changes.pop("revoke_tokens", True)
    if changes.get("role", Role.ADMIN) != Role.ADMIN:
        await _keep_an_admin(session, user, "demote")
    if changes.get("active") is False:
        await _keep_an_admin(session, user, "deactivate")
    if "role" in changes:
        user.role = changes["role"]
    if "active" in changes:
        user.active = changes["active"]
    details = {k: v for k, v in changes.items() if k != "password"}
    if "password" in changes:
        reason = password_policy.problem(changes["password"], user.username)
        if reason is not None:
            raise InvalidField("password", reason)
        user.password_hash = await asyncio.to_thread(hash_password, changes["password"])
        details["password"] = "changed"
        if revoke_tokens:
            details["tokens_revoked"] = await revoke_user_tokens(session, user.id)
    if "password" in changes or changes.get("active") is False:
        await session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    audit_change(session, actor, "user.update", f"user {user.id} {user.username}", details)
    await session.commit()
    return user


async def delete_user(session: AsyncSession, user_id: int, actor: CurrentUser) -> None:
    """Delete a user with their sessions and tokens (audit entries keep the name)."""
    user = await get_user(session, user_id)
    await _keep_an_admin(session, user, "delete")
    audit_change(session, actor, "user.delete", f"user {user.id} {user.username}")
    await session.delete(user)
    await session.commit()
