"""Creating users: from the CLI, from the API, and the first admin from the environment."""

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common import audit
from pulmogate.common.credentials import WeakPassword, hash_password
from pulmogate.common.db.accounts import Role, User
from pulmogate.common.db.session import Database
from pulmogate.common.settings import Settings

log = structlog.get_logger("pulmogate.users")

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"


class UserExists(ValueError):
    """The username is taken."""


async def create_user(
    session: AsyncSession,
    username: str,
    password: str,
    role: Role,
    *,
    actor_id: int | None = None,
    actor_name: str = "",
) -> User:
    """Add a user (password hashed with argon2) and audit it; raises UserExists, WeakPassword."""
    if await session.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserExists(f"user {username!r} already exists")
    user = User(
        username=username, password_hash=hash_password(password, username), role=role, active=True
    )
    session.add(user)
    await session.flush()
    audit.record(
        session,
        user_id=actor_id,
        username=actor_name,
        action="user.create",
        target=f"user {user.id} {username}",
        details={"role": str(role)},
    )
    return user


async def ensure_first_admin(db: Database, settings: Settings) -> bool:
    """Create ``admin_username`` when the database has no users yet; True if created.

    An existing user is never changed by the environment, and several api replicas
    starting at once create the admin once.
    """
    username = settings.admin_username
    password = settings.admin_password.get_secret_value()
    if not username:
        return False
    if not password:
        log.warning("PULMOGATE_ADMIN_USERNAME is set without PULMOGATE_ADMIN_PASSWORD; ignored")
        return False
    try:
        async with db.session() as session:
            if await session.scalar(select(func.count()).select_from(User)):
                return False
            await create_user(session, username, password, Role.ADMIN, actor_name="environment")
    except IntegrityError:
        return False
    except WeakPassword as exc:
        log.error(
            "PULMOGATE_ADMIN_PASSWORD refused, no admin created: choose a stronger one",
            reason=str(exc),
        )
        return False
    log.info("first admin created from the environment", username=username)
    return True


async def has_users(db: Database) -> bool:
    """Whether anyone can sign in yet."""
    async with db.sessions() as session:
        return bool(await session.scalar(select(func.count()).select_from(User)))


async def create_user_in(settings: Settings, username: str, password: str, role: Role) -> None:
    """``pulmogate user create``: add a user to the configured database.

    The embedded SQLite database is migrated first, as ``pulmogate up`` does; a server
    database is migrated by ``pulmogate db upgrade``.
    """
    from pulmogate.common.db.migrate import upgrade_async

    url = settings.effective_database_url
    if not settings.database_url:
        await upgrade_async(url)
    db = Database(url)
    try:
        async with db.session() as session:
            await create_user(session, username, password, role, actor_name="cli")
    finally:
        await db.dispose()
