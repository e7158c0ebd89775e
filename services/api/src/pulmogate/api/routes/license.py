"""GET /api/v1/license (status, any user) and POST /api/v1/license (install a key, admins)."""

from fastapi import APIRouter, status
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.api.account_schemas import LicenseInstall, LicenseStatusOut
from pulmogate.api.deps import AdminDep, ContextDep, SessionDep, UserDep
from pulmogate.api.errors import InvalidField
from pulmogate.api.schemas import ErrorMessage
from pulmogate.common.db.models import utcnow
from pulmogate.common.licensing import (
    LicenseError,
    current_status,
    install_license,
    studies_today,
)
from pulmogate.common.runtime import Context

router = APIRouter(prefix="/license", tags=["license"])


async def license_status(session: AsyncSession, ctx: Context) -> LicenseStatusOut:
    """The installed license's state today, with its fields and today's study count."""
    today = utcnow().date()
    settings = ctx.settings
    current = await current_status(
        session, settings.license_public_key, today, settings.license_warning_days
    )
    fields, row = current.fields, current.installed
    return LicenseStatusOut(
        status=current.state.value,
        message=current.message,
        product=fields.product if fields else None,
        licensee=fields.licensee if fields else None,
        issued=fields.issued if fields else None,
        expires=fields.expires if fields else None,
        days_left=current.days_left,
        studies_per_day=fields.studies_per_day if fields else None,
        studies_today=await studies_today(session, today) if fields else None,
        installed_at=row.installed_at if row else None,
    )


@router.get("", response_model=LicenseStatusOut)
async def get_license(session: SessionDep, ctx: ContextDep, _user: UserDep) -> LicenseStatusOut:
    """valid, warning (expires within the warning window), expired, none, invalid or community."""
    return await license_status(session, ctx)


@router.post(
    "",
    response_model=LicenseStatusOut,
    status_code=status.HTTP_201_CREATED,
    responses={422: {"model": ErrorMessage, "description": "The key does not verify"}},
)
async def add_license(
    body: LicenseInstall, session: SessionDep, ctx: ContextDep, admin: AdminDep
) -> LicenseStatusOut:
    """Install a license key (it replaces the one before); refused unless its signature verifies."""
    try:
        await install_license(
            session,
            body.key,
            ctx.settings.license_public_key,
            actor_id=admin.id,
            actor_name=admin.name,
        )
    except LicenseError as exc:
        raise InvalidField("key", str(exc)) from exc
    await session.commit()
    return await license_status(session, ctx)
