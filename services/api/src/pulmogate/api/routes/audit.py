"""GET /api/v1/audit: who changed what (admins only)."""

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from pulmogate.api.account_schemas import PRINTABLE, AuditOut
from pulmogate.api.deps import AdminDep, SessionDep
from pulmogate.api.schemas import Page
from pulmogate.common.db.accounts import AuditEntry

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=Page[AuditOut])
async def list_audit(
    session: SessionDep,
    _admin: AdminDep,
    action: Annotated[
        str | None, Query(max_length=64, pattern=PRINTABLE, description="e.g. rule.create")
    ] = None,
    username: Annotated[str | None, Query(max_length=64, pattern=PRINTABLE)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[AuditOut]:
    """Audit entries, newest first."""
    query = select(AuditEntry)
    if action:
        query = query.where(AuditEntry.action == action)
    if username:
        query = query.where(AuditEntry.username == username)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit).offset(offset))
    return Page(
        items=[AuditOut.model_validate(r) for r in rows],
        total=total or 0,
        limit=limit,
        offset=offset,
    )
