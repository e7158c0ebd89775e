"""Write lines into a job's log (what operators read; never patient data)."""

from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common.db.models import JobLog


def add_log(
    session: AsyncSession, job_id: int, service: str, message: str, level: str = "info"
) -> None:
    """Stage a log line in the current transaction."""
    session.add(JobLog(job_id=job_id, service=service, message=message, level=level))
