"""How the inference service words a job it cannot finish: a code and a sentence in the job
log, the exception's type and traceback in the service log only, no attribute value in
either."""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from pulmogate.common.db.models import Instance, Job, JobLog, JobStatus, Series
from pulmogate.common.events import AnalysisRequested
from pulmogate.common.runtime import Context, close_context, open_context
from pulmogate.common.settings import Settings
from pulmogate.inference.service import InferenceService
from tests.fixtures import quirks

# As pydicom words it; the traceback shows source lines (code, not values), so it is kept
# out of the line that raises.
VALUE_QUOTING_MESSAGE = "Unable to convert 'PHIBDAY' to 'DA' object"


class FailingSegmenter:
    """A segmenter that raises with a patient value in its message. A fake: the real
    engine cannot be made to fail on purpose, and this is the fault the service must word."""

    name, version, card = "qct", "1.0", ""

    def warm_up(self) -> None:
        """Nothing to load."""

    def segment(self, volume: Any) -> tuple[np.ndarray, np.ndarray]:
        raise ValueError(VALUE_QUOTING_MESSAGE)


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[Context]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'inference.db'}",
        broker_url="memory://",
        log_format="console",
    )
    ctx = await open_context(settings, migrate=True)
    yield ctx
    await close_context(ctx)


async def _job(ctx: Context, paths: list[Path], series_uid: str) -> int:
    """A queued job over ``paths``, as the receiver and the router leave it."""
    async with ctx.db.session() as session:
        series = Series(series_uid=series_uid, study_uid=series_uid + ".0", modality="CT")
        session.add(series)
        await session.flush()
        for k, path in enumerate(paths):
            session.add(
                Instance(
                    series_id=series.id,
                    sop_instance_uid=f"{series_uid}.{k + 1}",
                    sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                    transfer_syntax_uid="1.2.840.10008.1.2.1",
                    path=str(path),
                )
            )
        job = Job(series_id=series.id, status=JobStatus.QUEUED)
        session.add(job)
        await session.flush()
        return job.id


async def _outcome(ctx: Context, job_id: int) -> tuple[Job, list[str]]:
    async with ctx.db.session() as session:
        job = await session.get(Job, job_id)
        lines = await session.scalars(
            select(JobLog.message).where(JobLog.job_id == job_id).order_by(JobLog.id)
        )
        assert job is not None
        return job, list(lines)


async def _analyse(ctx: Context, job_id: int) -> list[MutableMapping[str, Any]]:
    service = InferenceService()
    service.ctx, service.segmenter = ctx, FailingSegmenter()
    with capture_logs() as logs:
        await service.on_event(AnalysisRequested(job_id=job_id))
    return logs


async def test_an_unexpected_error_fails_the_job_with_a_code_and_a_sentence(
    context: Context, tmp_path: Path
) -> None:
    folder = tmp_path / "plain"
    quirks.phantom_series(folder, slices=20, size=64)
    datasets = quirks.read(folder)
    quirks.set_values(datasets, {"PatientBirthDate": "PHIBDAY"})
    paths = quirks.write(datasets, tmp_path / "series")
    job_id = await _job(context, paths, str(datasets[0].SeriesInstanceUID))

    logs = await _analyse(context, job_id)

    job, lines = await _outcome(context, job_id)
    assert (job.status, job.reason_code) == (JobStatus.FAILED, "ANALYSIS_ERROR")
    assert job.reason == (
        "ANALYSIS_ERROR: the analysis stopped on an unexpected error while segmenting the "
        f"lungs and lesions; the inference service log holds the details for job {job_id}. "
        "Send the series again to retry; if it fails again, report the job with that log"
    )
    assert (
        "PatientBirthDate of the input is not a valid date (DA): written empty in the "
        "outputs" in lines
    )
    assert lines[-1] == job.reason
    for text in (*lines, str(logs)):
        assert "PHIBDAY" not in text
    for text in lines:
        assert "ValueError" not in text and "Traceback" not in text
    [failed] = [entry for entry in logs if entry["event"] == "analysis failed"]
    assert (
        failed["error_type"] == "pulmogate.inference.service.AnalysisError <- builtins.ValueError"
    )
    assert "segment" in failed["traceback"] and failed["step"] == "segmenting the lungs and lesions"


async def test_a_header_that_cannot_be_read_is_refused_with_its_code(
    context: Context, tmp_path: Path
) -> None:
    folder = tmp_path / "plain"
    quirks.phantom_series(folder, slices=20, size=64)
    datasets = quirks.read(folder)
    quirks.set_raw(datasets[4], "RescaleIntercept", "PHI-1024")
    paths = quirks.write(datasets, tmp_path / "series")
    job_id = await _job(context, paths, str(datasets[0].SeriesInstanceUID))

    logs = await _analyse(context, job_id)

    job, lines = await _outcome(context, job_id)
    assert (job.status, job.reason_code) == (JobStatus.REJECTED, "UNREADABLE_HEADER")
    assert job.reason == (
        "UNREADABLE_HEADER: slice 5: RescaleIntercept is not a number; correct it at the "
        "modality or PACS and send the series again"
    )
    assert "PHI" not in " ".join(lines) + str(logs)
    [refused] = [entry for entry in logs if entry["event"] == "input refused on an error"]
    assert refused["error_type"].startswith("pulmogate.inference.header.BadValue")
