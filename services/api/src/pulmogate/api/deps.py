"""FastAPI dependencies: the shared context, a DB session per request, the current user."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.api.auth import SESSION_COOKIE, CurrentUser, authenticate
from pulmogate.api.errors import Forbidden
from pulmogate.common.db.accounts import Role
from pulmogate.common.runtime import Context


def get_context(request: Request) -> Context:
    """The service context the app was created with."""
    ctx: Context = request.app.state.ctx
    return ctx


async def get_session(ctx: Annotated[Context, Depends(get_context)]) -> AsyncIterator[AsyncSession]:
    """A session for one request; crud functions commit their own changes."""
    async with ctx.db.sessions() as session:
        yield session


_bearer_scheme = HTTPBearer(auto_error=False, description="An API token from POST /tokens")
_cookie_scheme = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="Set by POST /auth/login; unsafe requests also send X-CSRF-Token",
)


async def current_user(
    request: Request,
    ctx: Annotated[Context, Depends(get_context)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
    _cookie: Annotated[str | None, Depends(_cookie_scheme)],
) -> CurrentUser:
    """The authenticated caller (bearer token or session cookie + CSRF token); 401/403 otherwise.

    The two security schemes only document the credentials in OpenAPI; ``authenticate`` reads
    them from the request.
    """
    user = await authenticate(ctx, request)
    request.state.user = user
    return user


def require_role(*roles: Role | str) -> Callable[..., Awaitable[CurrentUser]]:
    """A dependency that lets through the given roles (admins always) and refuses others (403)."""
    allowed = {Role.ADMIN, *(Role(r) for r in roles)}
    names = " or ".join(sorted(allowed))

    async def check_role(user: Annotated[CurrentUser, Depends(current_user)]) -> CurrentUser:
        if user.role not in allowed:
            raise Forbidden(f"the {user.role} role may not do this (needs {names})")
        return user

    return check_role


SessionDep = Annotated[AsyncSession, Depends(get_session)]
ContextDep = Annotated[Context, Depends(get_context)]
# Any signed-in role (viewer, operator, admin); the two below narrow it.
UserDep = Annotated[CurrentUser, Depends(current_user)]
OperatorDep = Annotated[CurrentUser, Depends(require_role(Role.OPERATOR))]
AdminDep = Annotated[CurrentUser, Depends(require_role(Role.ADMIN))]

__all__ = [
    "AdminDep",
    "ContextDep",
    "CurrentUser",
    "OperatorDep",
    "SessionDep",
    "UserDep",
    "current_user",
    "get_context",
    "get_session",
    "require_role",
]
