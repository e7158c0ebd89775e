"""Who is calling: a bearer API token or a session cookie (with its CSRF token), and sign-in."""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request, Response
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.api.errors import Forbidden, TooManyRequests, Unauthorized
from pulmogate.common import audit
from pulmogate.common.credentials import (
    TOKEN_PREFIX,
    hash_password,
    needs_rehash,
    new_secret,
    same_secret,
    sha256_hex,
    verify_password,
)
from pulmogate.common.db.accounts import ApiToken, LoginFailure, User, UserSession
from pulmogate.common.db.models import utcnow
from pulmogate.common.runtime import Context

SESSION_COOKIE = "pulmogate_session"
CSRF_COOKIE = "pulmogate_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class CurrentUser:
    """Who is calling, and how they proved it."""

    name: str
    role: str
    id: int | None = None
    via: str = "token"
    csrf_token: str | None = None


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
    if row.last_used_at is None or now - row.last_used_at > TOKEN_TOUCH_INTERVAL:
        row.last_used_at = now
        await session.commit()
    return CurrentUser(name=row.user.username, role=row.user.role, id=row.user.id, via="token")


async def _csrf_from_request(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(FORM_TYPES):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def _user_from_session(session: AsyncSession, request: Request, secret: str) -> CurrentUser:
    row = await session.scalar(
        select(UserSession).where(UserSession.secret_hash == sha256_hex(secret))
    )
    if row is None or row.expires_at <= utcnow() or not row.user.active:
        raise Unauthorized("session expired or signed out: sign in again")
    if request.method not in SAFE_METHODS:
        sent = await _csrf_from_request(request)
        if not sent or not same_secret(sent, row.csrf_token):
            raise Forbidden(
                f"CSRF token missing or wrong: send the {CSRF_HEADER} header "
                f"(or the {CSRF_FIELD} form field) with the value from sign-in"
            )
    return CurrentUser(
        name=row.user.username,
        role=row.user.role,
        id=row.user.id,
        via="session",
        csrf_token=row.csrf_token,
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


async def _check_rate_limit(
    session: AsyncSession, ctx: Context, username: str, ip: str, now: datetime
) -> None:
    window = timedelta(seconds=ctx.settings.login_window_s)
    recent = (
        select(func.count(), func.min(LoginFailure.at))
        .where(LoginFailure.username == username)
        .where(LoginFailure.client_ip == ip)
        .where(LoginFailure.at > now - window)
    )
    count, oldest = (await session.execute(recent)).one()
    if count >= ctx.settings.login_max_failures:
        wait = max(1, math.ceil((oldest + window - now).total_seconds()))
        raise TooManyRequests(
            f"too many failed sign-ins for this user from {ip}: try again in {wait} s", wait
        )


@dataclass(frozen=True)
class SignedIn:
    """A new session: the cookie's secret, its CSRF token, and the user."""

    secret: str
    csrf_token: str
    user: CurrentUser


async def sign_in(ctx: Context, request: Request, username: str, password: str) -> SignedIn:
    """Check the password (rate limited per username and IP) and open a session."""
    ip = client_ip(request)
    now = utcnow()
    async with ctx.db.session() as session:
        await _check_rate_limit(session, ctx, username, ip, now)
        user = await session.scalar(select(User).where(User.username == username))
        ok = verify_password(user.password_hash if user else "", password)
        if not ok or user is None or not user.active:
            session.add(LoginFailure(username=username[:64], client_ip=ip[:45], at=now))
            await session.execute(
                delete(LoginFailure).where(
                    LoginFailure.at < now - timedelta(seconds=ctx.settings.login_window_s)
                )
            )
            audit.record(
                session,
                user_id=user.id if user else None,
                username=username[:64],
                action="auth.login_failed",
                details={"ip": ip},
            )
            await session.commit()
            raise Unauthorized("wrong username or password, or the account is deactivated")
        await session.execute(
            delete(LoginFailure)
            .where(LoginFailure.username == username)
            .where(LoginFailure.client_ip == ip)
        )
        if needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
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
