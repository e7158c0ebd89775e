"""CRUD /api/v1/users (admins only)."""

from fastapi import APIRouter, status

from pulmogate.api.account_schemas import UserCreate, UserOut, UserUpdate
from pulmogate.api.crud import users as crud
from pulmogate.api.deps import AdminDep, SessionDep
from pulmogate.api.routes.responses import conflict, not_found

router = APIRouter(prefix="/users", tags=["users"])

NOT_FOUND = not_found("user")
CONFLICT = conflict("The name is taken, or the change would leave no active admin")


@router.get("", response_model=list[UserOut])
async def list_users(session: SessionDep, _admin: AdminDep) -> list[UserOut]:
    """All users by name."""
    return [UserOut.model_validate(u) for u in await crud.list_users(session)]


@router.post("", response_model=UserOut, status_code=status.HTTP_201_CREATED, responses=CONFLICT)
async def create_user(body: UserCreate, session: SessionDep, admin: AdminDep) -> UserOut:
    """Add a user with a role and a password."""
    return UserOut.model_validate(await crud.add_user(session, body, admin))


@router.get("/{user_id}", response_model=UserOut, responses=NOT_FOUND)
async def get_user(user_id: int, session: SessionDep, _admin: AdminDep) -> UserOut:
    """One user."""
    return UserOut.model_validate(await crud.get_user(session, user_id))


@router.patch("/{user_id}", response_model=UserOut, responses={**NOT_FOUND, **CONFLICT})
async def update_user(
    user_id: int, body: UserUpdate, session: SessionDep, admin: AdminDep
) -> UserOut:
    """Change a user's role, active flag or password (their sessions end on the last two; a
    new password also revokes their API tokens unless ``revoke_tokens`` is false)."""
    return UserOut.model_validate(await crud.update_user(session, user_id, body, admin))


@router.delete(
    "/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses={**NOT_FOUND, **CONFLICT}
)
async def delete_user(user_id: int, session: SessionDep, admin: AdminDep) -> None:
    """Remove a user with their sessions and tokens."""
    await crud.delete_user(session, user_id, admin)
