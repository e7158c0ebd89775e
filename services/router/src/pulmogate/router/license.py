"""The license check before analysis: none, invalid, expired, or over the daily study limit."""

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common.db.models import Series, utcnow
from pulmogate.common.licensing import LicenseState, current_status, studies_today
from pulmogate.common.refusals import Refusal, RefusalCode
from pulmogate.common.settings import Settings


async def check_license(
    session: AsyncSession, series: Series, settings: Settings, today: date | None = None
) -> Refusal | None:
    """Refusal when analysis is not licensed today; None when it is (or licensing is off)."""
    today = today or utcnow().date()
    status = await current_status(
        session, settings.license_public_key, today, settings.license_warning_days
    )
    if status.state == LicenseState.COMMUNITY:
        return None
    if status.state == LicenseState.NONE:
        return Refusal(
            RefusalCode.NO_LICENSE,
            "no license installed: add one with `pulmogate license add FILE` "
            "or POST /api/v1/license",
        )
    if status.state == LicenseState.INVALID:
        return Refusal(RefusalCode.NO_LICENSE, status.message)
    if status.state == LicenseState.EXPIRED:
        return Refusal(RefusalCode.LICENSE_EXPIRED, status.message)
    limit = status.fields.studies_per_day if status.fields else None
    if limit is not None:
        done = await studies_today(session, today, exclude_series_id=series.id)
        if done >= limit:
            return Refusal(
                RefusalCode.LICENSE_DAILY_LIMIT,
                f"the license allows {limit} studies per day and {done} were analysed today "
                "(UTC); analysis resumes tomorrow",
            )
    return None
