"""Who is calling: a bearer API token or a session cookie (with its CSRF token), and sign-in."""

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from fastapi import Request, Response
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.api import login_limit
from pulmogate.api.db_reserve import DatabaseReserve, is_disk_full
from pulmogate.api.errors import Forbidden, Unauthorized
from pulmogate.common import audit
from pulmogate.common.credentials import (
    TOKEN_PREFIX,
    needs_rehash,
    new_secret,
    rehash_password,
    same_secret,
    sha256_hex,
    verify_password,
)
from pulmogate.common.db.accounts import ApiToken, User, UserSession
from pulmogate.common.db.models import utcnow
from pulmogate.common.runtime import Context

log = structlog.get_logger("pulmogate.api")

SESSION_COOKIE = "pulmogate_session"
CSRF_COOKIE = "pulmogate_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)
FORM_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"
# The one route whose multipart body may carry the CSRF field: it reads the body itself, after
# the role check, and verifies the field then (``CurrentUser.csrf_pending``).
MULTIPART_CSRF_ROUTE = ("POST", "/api/v1/uploads")


@dataclass(frozen=True)
class CurrentUser:
    """Who is calling, and how they proved it."""

    name: str
    role: str
    id: int | None = None
    via: str = "token"
    csrf_token: str | None = None
    csrf_pending: bool = False

    def check_form_csrf(self, sent: str | None) -> None:
        """Verify a CSRF field the route read from its own body (Forbidden when wrong)."""
        if self.csrf_pending and not (
            sent and self.csrf_token and same_secret(sent, self.csrf_token)
        ):
            raise csrf_refusal()


def csrf_refusal() -> Forbidden:
    """403 naming what to send."""
    return Forbidden(
        f"CSRF token missing or wrong: send the {CSRF_HEADER} header "
        f"(or the {CSRF_FIELD} form field) with the value from sign-in"
    )


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


async def _user_from_token(session: AsyncSession, token: str) -> CurrentUser:
    if not token.startswith(TOKEN_PREFIX):
        raise Unauthorized("invalid API token")
    row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == sha256_hex(token)))
    now = utcnow()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("invalid or revoked API token")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized(
            f"API token {row.prefix}… expired at {row.expires_at:%Y-%m-%d %H:%M} UTC"
        )
    if not row.user.active:
        raise Unauthorized("the token's user is deactivated")
    user = CurrentUser(name=row.user.username, role=row.user.role, id=row.user.id, via="token")
    if row.last_used_at is None or now - row.last_used_at > TOKEN_TOUCH_INTERVAL:
        await _touch(session, row.id, now)
    return user


async def _touch(session: AsyncSession, token_id: int, now: datetime) -> None:
    """Record the token's last use, best effort: a database that cannot write (a full disk)
    must not refuse a valid token."""
    try:
        await session.execute(
            update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now)
        )
        await session.commit()
    except DBAPIError as exc:
        await session.rollback()
        log.warning("token last use not recorded", token_id=token_id, error=str(exc)[:200])


async def _csrf_from_request(request: Request) -> str:
    """The header, else the field of a small urlencoded form (a multipart body is not read)."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(FORM_TYPE):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def _csrf_in_own_body(request: Request) -> bool:
    """A multipart upload without the header: the route checks the field after the role."""
    return (
        (request.method, request.url.path) == MULTIPART_CSRF_ROUTE
        and CSRF_HEADER not in request.headers
        and request.headers.get("content-type", "").startswith(MULTIPART_TYPE)
    )


async def _user_from_session(session: AsyncSession, request: Request, secret: str) -> CurrentUser:
    row = await session.scalar(
        select(UserSession).where(UserSession.secret_hash == sha256_hex(secret))
    )
    if row is None or row.expires_at <= utcnow() or not row.user.active:
        raise Unauthorized("session expired or signed out: sign in again")
    pending = request.method not in SAFE_METHODS and _csrf_in_own_body(request)
    if request.method not in SAFE_METHODS and not pending:
        sent = await _csrf_from_request(request)
        if not sent or not same_secret(sent, row.csrf_token):
            raise csrf_refusal()
    return CurrentUser(
        name=row.user.username,
        role=row.user.role,
        id=row.user.id,
        via="session",
        csrf_token=row.csrf_token,
        csrf_pending=pending,
    )


async def authenticate(ctx: Context, request: Request) -> CurrentUser:
    """The caller by bearer token, else by session cookie; Unauthorized/Forbidden otherwise."""
    token = _bearer(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    async with ctx.db.sessions() as session:
        if token is not None:
            return await _user_from_token(session, token)
        if cookie:
            return await _user_from_session(session, request, cookie)
    raise Unauthorized("authentication required: sign in, or send 'Authorization: Bearer <token>'")


def client_ip(request: Request) -> str:
    """The peer address (behind a proxy, uvicorn's --proxy-headers sets it)."""
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True)
class SignedIn:
    """A new session: the cookie's secret, its CSRF token, and the user."""

    secret: str
    csrf_token: str
    user: CurrentUser


async def sign_in(ctx: Context, request: Request, username: str, password: str) -> SignedIn:
    """Check the password (rate limited per username and IP) and open a session.

    On the embedded database a full disk releases the space reserve and tries once more.
    """
    reserve: DatabaseReserve | None = getattr(request.app.state, "db_reserve", None)
    try:
        signed_in = await _sign_in(ctx, client_ip(request), username, password)
    except DBAPIError as exc:
        if not (is_disk_full(exc) and reserve is not None and reserve.release()):
            raise
        signed_in = await _sign_in(ctx, client_ip(request), username, password)
    if reserve is not None:
        await asyncio.to_thread(reserve.keep)
    return signed_in


async def _sign_in(ctx: Context, ip: str, username: str, password: str) -> SignedIn:
    now = utcnow()
    window = timedelta(seconds=ctx.settings.login_window_s)
    async with ctx.db.session() as session:
        await login_limit.take_attempt(
            ctx.db,
            session,
            username,
            ip,
            now,
            max_failures=ctx.settings.login_max_failures,
            window=window,
        )
        user = await session.scalar(select(User).where(User.username == username))
        ok = await asyncio.to_thread(verify_password, user.password_hash if user else "", password)
        if not ok or user is None or not user.active:
            audit.record(
                session,
                user_id=user.id if user else None,
                username=username[:64],
                action="auth.login_failed",
                details={"ip": ip},
            )
            await session.commit()
            raise Unauthorized("wrong username or password, or the account is deactivated")
        await login_limit.forget_failures(session, username, ip)
        if needs_rehash(user.password_hash):
            user.password_hash = await asyncio.to_thread(rehash_password, password)
        user.last_login_at = now
        await session.execute(delete(UserSession).where(UserSession.expires_at < now))
        secret, csrf = new_secret(), new_secret()
        session.add(
            UserSession(
                secret_hash=sha256_hex(secret),
                user_id=user.id,
                csrf_token=csrf,
                created_at=now,
                expires_at=now + timedelta(hours=ctx.settings.session_hours),
            )
        )
        audit.record(
            session,
            user_id=user.id,
            username=user.username,
            action="auth.login",
            details={"ip": ip},
        )
    return SignedIn(
        secret, csrf, CurrentUser(user.username, user.role, user.id, "session", csrf_token=csrf)
    )


def set_session_cookies(response: Response, ctx: Context, secret: str, csrf: str) -> None:
    """The HttpOnly session cookie and the CSRF cookie a page script may read (double submit)."""
    max_age = int(ctx.settings.session_hours * 3600)
    secure = ctx.settings.cookie_secure
    response.set_cookie(
        SESSION_COOKIE, secret, max_age=max_age, httponly=True, samesite="lax", secure=secure
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=max_age, httponly=False, samesite="strict", secure=secure
    )


def clear_session_cookies(response: Response) -> None:
    """Forget both cookies in the browser."""
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)


async def sign_out(ctx: Context, request: Request, user: CurrentUser) -> None:
    """End the caller's session (the row goes; the cookie no longer opens anything)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or user.via != "session":
        return
    async with ctx.db.session() as session:
        await session.execute(
            delete(UserSession).where(UserSession.secret_hash == sha256_hex(cookie))
        )
        audit.record(session, user_id=user.id, username=user.name, action="auth.logout")
