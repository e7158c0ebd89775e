"""GET /api/v1/arrivals: series still arriving, before they become jobs."""

from typing import Annotated

from fastapi import APIRouter, Query

from pulmogate.api.crud import arrivals as crud
from pulmogate.api.deps import SessionDep
from pulmogate.api.schemas import ArrivalOut

router = APIRouter(prefix="/arrivals", tags=["jobs"])


@router.get("", response_model=list[ArrivalOut])
async def list_arrivals(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[ArrivalOut]:
    """Series being received (instances so far) or complete and not yet routed to a job."""
    return await crud.list_arrivals(session, limit=limit)
