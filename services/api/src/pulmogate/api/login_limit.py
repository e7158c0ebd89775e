"""The sign-in limit: each attempt is counted, atomically, before its password is checked.

An attempt takes one ``login_failures`` row for its username and client address with a
single INSERT … SELECT that inserts only while fewer than ``login_max_failures`` rows are in
the window. On PostgreSQL a transaction-scoped advisory lock on the (username, address) pair
makes that count-and-insert one step for concurrent requests; SQLite runs one writer at a
time and the statement holds the write lock from its first read. So however many requests
arrive at once, at most ``login_max_failures`` passwords are checked per window; a correct
password removes the pair's rows again.
"""

import hashlib
import math
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.api.errors import TooManyRequests
from pulmogate.common.db.accounts import LoginFailure
from pulmogate.common.db.session import Database

USERNAME_MAX, IP_MAX = 64, 45


def _lock_key(username: str, ip: str) -> int:
    """A signed 64-bit advisory lock key for the pair."""
    digest = hashlib.sha256(f"login\0{username}\0{ip}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _pair(username: str, ip: str) -> tuple[str, str]:
    return username[:USERNAME_MAX], ip[:IP_MAX]


async def take_attempt(
    db: Database,
    session: AsyncSession,
    username: str,
    ip: str,
    now: datetime,
    *,
    max_failures: int,
    window: timedelta,
) -> None:
    """Count one attempt for (username, ip) and commit it, or refuse with 429 and Retry-After."""
    username, ip = _pair(username, ip)
    if not db.is_sqlite:
        await session.execute(select(func.pg_advisory_xact_lock(_lock_key(username, ip))))
    # Rows older than the window count for nobody (a write first: on SQLite the transaction
    # holds the write lock from here on).
    await session.execute(delete(LoginFailure).where(LoginFailure.at < now - window))
    recent = (
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.username == username)
        .where(LoginFailure.client_ip == ip)
        .where(LoginFailure.at > now - window)
        .scalar_subquery()
    )
    at_type = LoginFailure.__table__.c.at.type
    taken = await session.execute(
        insert(LoginFailure).from_select(
            ["username", "client_ip", "at"],
            select(literal(username), literal(ip), literal(now, at_type)).where(
                recent < max_failures
            ),
        )
    )
    if taken.rowcount == 1:  # type: ignore[attr-defined]
        await session.commit()
        return
    oldest = await session.scalar(
        select(func.min(LoginFailure.at))
        .where(LoginFailure.username == username)
        .where(LoginFailure.client_ip == ip)
        .where(LoginFailure.at > now - window)
    )
    await session.rollback()
    wait = max(1, math.ceil(((oldest or now) + window - now).total_seconds()))
    raise TooManyRequests(
        f"too many failed sign-ins for this user from {ip}: try again in {wait} s", wait
    )


async def forget_failures(session: AsyncSession, username: str, ip: str) -> None:
    """A correct password: the pair starts afresh."""
    username, ip = _pair(username, ip)
    await session.execute(
        delete(LoginFailure)
        .where(LoginFailure.username == username)
        .where(LoginFailure.client_ip == ip)
    )
