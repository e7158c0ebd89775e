"""CRUD /api/v1/destinations."""

from fastapi import APIRouter, status

from pulmogate.api.auditing import audit_change
from pulmogate.api.crud import destinations as crud
from pulmogate.api.deps import OperatorDep, SessionDep
from pulmogate.api.routes.responses import conflict, not_found
from pulmogate.api.schemas import DestinationCreate, DestinationOut, DestinationUpdate

router = APIRouter(prefix="/destinations", tags=["destinations"])

NOT_FOUND = not_found("destination")
CONFLICT = conflict("Name taken, or the destination is still in use")


@router.get("", response_model=list[DestinationOut])
async def list_destinations(session: SessionDep, _user: OperatorDep) -> list[DestinationOut]:
    """All destinations by name."""
    return [DestinationOut.model_validate(d) for d in await crud.list_destinations(session)]


@router.post(
    "", response_model=DestinationOut, status_code=status.HTTP_201_CREATED, responses=CONFLICT
)
async def create_destination(
    body: DestinationCreate, session: SessionDep, user: OperatorDep
) -> DestinationOut:
    """Add a destination."""
    audit_change(
        session,
        user,
        "destination.create",
        f"destination {body.name!r}",
        body.model_dump(mode="json"),
    )
    return DestinationOut.model_validate(await crud.create_destination(session, body))


@router.get("/{destination_id}", response_model=DestinationOut, responses=NOT_FOUND)
async def get_destination(
    destination_id: int, session: SessionDep, _user: OperatorDep
) -> DestinationOut:
    """One destination."""
    return DestinationOut.model_validate(await crud.get_destination(session, destination_id))


@router.patch(
    "/{destination_id}", response_model=DestinationOut, responses={**NOT_FOUND, **CONFLICT}
)
async def update_destination(
    destination_id: int, body: DestinationUpdate, session: SessionDep, user: OperatorDep
) -> DestinationOut:
    """Change some fields of a destination."""
    audit_change(
        session,
        user,
        "destination.update",
        f"destination {destination_id}",
        body.model_dump(mode="json", exclude_unset=True),
    )
    return DestinationOut.model_validate(
        await crud.update_destination(session, destination_id, body)
    )


@router.delete(
    "/{destination_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**NOT_FOUND, **CONFLICT},
)
async def delete_destination(destination_id: int, session: SessionDep, user: OperatorDep) -> None:
    """Remove a destination that no rule or delivery uses."""
    audit_change(session, user, "destination.delete", f"destination {destination_id}")
    await crud.delete_destination(session, destination_id)
