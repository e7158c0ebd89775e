"""POST /api/v1/auth/login, /auth/logout, /auth/password; GET /auth/me."""

import asyncio

from fastapi import APIRouter, Request, Response, status
from sqlalchemy import delete

from pulmogate.api import auth
from pulmogate.api.account_schemas import LoginRequest, Me, PasswordChange
from pulmogate.api.deps import ContextDep, UserDep
from pulmogate.api.errors import InvalidField
from pulmogate.api.routes.responses import Responses
from pulmogate.api.schemas import ErrorMessage
from pulmogate.common import audit, password_policy
from pulmogate.common.api_tokens import revoke_user_tokens
from pulmogate.common.credentials import hash_password, verify_password
from pulmogate.common.db.accounts import User, UserSession

router = APIRouter(prefix="/auth", tags=["auth"])

UNAUTHORIZED: Responses = {401: {"model": ErrorMessage, "description": "Not signed in"}}


@router.post(
    "/login",
    response_model=Me,
    responses={
        401: {"model": ErrorMessage, "description": "Wrong username or password"},
        429: {"model": ErrorMessage, "description": "Too many failures; see Retry-After"},
    },
)
async def login(body: LoginRequest, request: Request, response: Response, ctx: ContextDep) -> Me:
    """Sign in: sets the session cookie and returns the CSRF token for unsafe requests."""
    signed_in = await auth.sign_in(ctx, request, body.username, body.password)
    auth.set_session_cookies(response, ctx, signed_in.secret, signed_in.csrf_token)
    user = signed_in.user
    return Me(
        id=user.id, username=user.name, role=user.role, auth="session", csrf_token=user.csrf_token
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=UNAUTHORIZED)
async def logout(request: Request, ctx: ContextDep, user: UserDep) -> Response:
    """End this browser session (bearer tokens are revoked under /tokens instead)."""
    await auth.sign_out(ctx, request, user)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    auth.clear_session_cookies(response)
    return response


@router.get("/me", response_model=Me, responses=UNAUTHORIZED)
async def me(user: UserDep) -> Me:
    """Who is signed in, with which role."""
    return Me(
        id=user.id,
        username=user.name,
        role=user.role,
        auth="session" if user.via == "session" else "token",
        csrf_token=user.csrf_token,
    )


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT, responses=UNAUTHORIZED)
async def change_password(body: PasswordChange, ctx: ContextDep, user: UserDep) -> None:
    """Change one's own password; every session of the user ends (sign in again) and, unless
    ``revoke_tokens`` is false, every API token of the user is revoked."""
    async with ctx.db.session() as session:
        row = await session.get(User, user.id)
        if row is None or not await asyncio.to_thread(
            verify_password, row.password_hash, body.current_password
        ):
            raise InvalidField("current_password", "the current password is wrong")
        reason = password_policy.problem(body.new_password, row.username)
        if reason is not None:
            raise InvalidField("new_password", reason)
        row.password_hash = await asyncio.to_thread(hash_password, body.new_password)
        await session.execute(delete(UserSession).where(UserSession.user_id == row.id))
        revoked = await revoke_user_tokens(session, row.id) if body.revoke_tokens else 0
        audit.record(
            session,
            user_id=row.id,
            username=row.username,
            action="user.password",
            target=f"user {row.id} {row.username}",
            details={"tokens_revoked": revoked, "revoke_tokens": body.revoke_tokens},
        )
