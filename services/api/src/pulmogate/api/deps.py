"""FastAPI dependencies: the shared context, a DB session per request, the current user."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common.runtime import Context


def get_context(request: Request) -> Context:
    """The service context the app was created with."""
    ctx: Context = request.app.state.ctx
    return ctx


async def get_session(ctx: Annotated[Context, Depends(get_context)]) -> AsyncIterator[AsyncSession]:
    """A session for one request; crud functions commit their own changes."""
    async with ctx.db.sessions() as session:
        yield session


@dataclass(frozen=True)
class CurrentUser:
    """Who is calling."""

    name: str
    role: str


ANONYMOUS_ADMIN = CurrentUser(name="anonymous", role="admin")


async def current_user() -> CurrentUser:
    """Placeholder that allows everything: authentication arrives with the operations issue."""
    return ANONYMOUS_ADMIN


SessionDep = Annotated[AsyncSession, Depends(get_session)]
ContextDep = Annotated[Context, Depends(get_context)]
UserDep = Annotated[CurrentUser, Depends(current_user)]
