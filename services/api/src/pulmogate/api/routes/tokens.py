"""POST/GET /api/v1/tokens, DELETE /api/v1/tokens/{id}: bearer tokens for REST clients."""

from fastapi import APIRouter, status

from pulmogate.api.account_schemas import TokenCreate, TokenCreated, TokenOut
from pulmogate.api.crud import tokens as crud
from pulmogate.api.deps import SessionDep, UserDep
from pulmogate.api.routes.responses import not_found

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
async def create_token(body: TokenCreate, session: SessionDep, user: UserDep) -> TokenCreated:
    """A token acting as the caller (same role); its secret is shown only in this answer."""
    return await crud.create_token(session, body, user)


@router.get("", response_model=list[TokenOut])
async def list_tokens(session: SessionDep, user: UserDep) -> list[TokenOut]:
    """The caller's tokens (admins: everyone's), newest first, without secrets."""
    return await crud.list_tokens(session, user)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT, responses=not_found("token"))
async def revoke_token(token_id: int, session: SessionDep, user: UserDep) -> None:
    """Revoke a token at once."""
    await crud.revoke_token(session, token_id, user)
