"""Inference service: consumes ``analysis.requested``, analyses the series, stores the outputs."""

import asyncio
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common.db.models import (
    FINAL_JOB_STATUSES,
    Destination,
    Instance,
    Job,
    JobStatus,
    OutputObject,
    RuleDestination,
    utcnow,
)
from pulmogate.common.dicom.encoding import ImageEncoding, ordered, stored_forms
from pulmogate.common.events import AnalysisFinished, AnalysisRequested, Event, NoticeRequested
from pulmogate.common.joblog import add_log
from pulmogate.common.lifecycle import (
    Verdict,
    analysis_gone,
    end_analysis,
    record_analysis,
    start_analysis,
)
from pulmogate.common.metrics import ANALYSIS_SECONDS
from pulmogate.common.outbox import enqueue
from pulmogate.common.refusals import Refusal, RefusalCode
from pulmogate.common.runtime import Context
from pulmogate.common.storage import atomic_write, dataset_bytes
from pulmogate.common.workers import BEAT_EVERY_S, this_worker
from pulmogate.inference.notices import make_notice
from pulmogate.inference.stored import StoredObject

if TYPE_CHECKING:
    from pulmogate.inference.segment.base import Segmenter

log = structlog.get_logger("pulmogate.inference")

QUEUE = "pulmogate.inference"
SERVICE = "inference"
DONE_STATUSES = FINAL_JOB_STATUSES | {JobStatus.ANALYSED, JobStatus.DELIVERING}


class AnalysisError(Exception):
    """An unexpected failure at one step of an analysis; the error itself is chained."""

    def __init__(self, step: str) -> None:
        super().__init__(step)
        self.step = step


def error_fields(error: BaseException | None) -> dict[str, str]:
    """An exception for the service log: its type and its causes' types, and where each was
    raised, never a message (those of pydicom, numpy and highdicom may quote values)."""
    if error is None:
        return {}
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and len(chain) < 5:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    names = [f"{type(e).__module__}.{type(e).__qualname__}" for e in chain]
    frames = [
        f"{name} raised at:\n{''.join(traceback.format_tb(e.__traceback__))}"
        for name, e in zip(reversed(names), reversed(chain), strict=True)
    ]
    return {"error_type": " <- ".join(names), "traceback": "".join(frames)}


def analysis_error(job_id: int, step: str) -> Refusal:
    """The job's reason for an unexpected failure: what stopped, where the details are."""
    return Refusal(
        RefusalCode.ANALYSIS_ERROR,
        f"the analysis stopped on an unexpected error while {step}; the inference service "
        f"log holds the details for job {job_id}. Send the series again to retry; if it "
        "fails again, report the job with that log",
    )


@dataclass
class AnalysisResult:
    """What one analysis produced, ready to be recorded."""

    verdict: Verdict
    outputs: list[StoredObject]


class InferenceService:
    """One analysis at a time per replica (prefetch 1); scale by running more replicas."""

    name = SERVICE

    def __init__(self) -> None:
        self.ctx: Context | None = None
        self.segmenter: Segmenter | None = None
        self._running: dict[int, asyncio.Task[None]] = {}

    async def start(self, ctx: Context) -> None:
        """Load and warm the configured model once, then subscribe to analysis requests."""
        from pulmogate.inference.analysis import default_segmenter

        self.ctx = ctx
        settings = ctx.settings
        self.segmenter = await asyncio.to_thread(
            default_segmenter, settings.model, settings.execution_provider
        )
        log.info("model ready", model=settings.model, providers=settings.execution_provider)
        await ctx.bus.subscribe(
            QUEUE,
            [AnalysisRequested.routing_key, NoticeRequested.routing_key],
            self.on_event,
            prefetch=1,
        )

    async def stop(self) -> None:
        """Nothing to release: unacked work returns to the queue."""

    async def on_event(self, event: Event) -> None:
        """Analyse one job (idempotent: a finished job is not analysed again), or build the
        failure notice the router asked for (``notices``).

        The analysis is shielded from its consumer: a consumer cancelled by a lost broker
        connection leaves it running, and the redelivered message waits for it (and is
        acked, or retried if it failed) instead of starting a second one at the same time.
        """
        if isinstance(event, NoticeRequested):
            assert self.ctx is not None
            await make_notice(self.ctx, event.job_id)
            return
        assert isinstance(event, AnalysisRequested)
        while (running := self._running.get(event.job_id)) is not None:
            log.info("job being analysed here already, waiting for it", job_id=event.job_id)
            await asyncio.shield(running)
        # Usually a no-op now (the job is analysed); it analyses again when the job was
        # queued again meanwhile (its results were then discarded).
        analysis = asyncio.create_task(self._analyse_job(event))
        self._running[event.job_id] = analysis
        analysis.add_done_callback(lambda task: self._forget(event.job_id, task))
        await asyncio.shield(analysis)

    def _forget(self, job_id: int, task: "asyncio.Task[None]") -> None:
        if self._running.get(job_id) is task:
            del self._running[job_id]

    async def _analyse_job(self, event: AnalysisRequested) -> None:
        """Claim the job (or take it over from a process that is gone), analyse, record."""
        assert self.ctx is not None
        ctx = self.ctx
        me = this_worker()
        async with ctx.db.session() as session:
            job = await session.get(Job, event.job_id, with_for_update=ctx.db.lock(Job))
            if job is None:
                log.warning("analysis requested for an unknown job", job_id=event.job_id)
                return
            if job.status in DONE_STATUSES:
                log.info("job already analysed, ignoring redelivery", job_id=job.id)
                return
            if job.status == JobStatus.ANALYSING:
                if job.worker != me and not analysis_gone(job):
                    log.info("job analysed by another process", job_id=job.id, worker=job.worker)
                    return
                add_log(
                    session,
                    job.id,
                    SERVICE,
                    "the previous analysis attempt was interrupted (its process is gone); "
                    "analysing again",
                    level="warning",
                )
            start_analysis(job, me)
            paths = [
                Path(p)
                for p in await session.scalars(
                    select(Instance.path).where(Instance.series_id == job.series_id)
                )
            ]
            job.analysed_instance_count = len(paths)
            add_log(
                session,
                job.id,
                SERVICE,
                f"analysis started on {len(paths)} instances (model {ctx.settings.model})",
            )
            encodings = await self._image_encodings(session, job.rule_id)
        beat = asyncio.create_task(self._beat(event.job_id, me))
        started = time.perf_counter()
        notes: list[str] = []  # what the outputs carry differently from the input, and why
        try:
            result = await asyncio.to_thread(self._analyse, event.job_id, paths, notes, encodings)
        except Refusal as refusal:
            if refusal.__cause__ is not None:  # an error turned into a refusal: keep its trace
                log.warning(
                    "input refused on an error",
                    job_id=event.job_id,
                    code=str(refusal.code),
                    **error_fields(refusal.__cause__),
                )
            await self._finish_refused(event.job_id, me, refusal, notes)
            return
        except AnalysisError as error:
            log.error(
                "analysis failed", job_id=event.job_id, step=error.step, **error_fields(error)
            )
            await self._finish_failed(
                event.job_id, me, analysis_error(event.job_id, error.step), notes
            )
            return
        except Exception as error:  # outside the steps (the worker thread itself)
            log.error("analysis failed", job_id=event.job_id, **error_fields(error))
            await self._finish_failed(
                event.job_id, me, analysis_error(event.job_id, "running the analysis"), notes
            )
            return
        finally:
            beat.cancel()
        ANALYSIS_SECONDS.observe(time.perf_counter() - started)
        await self._record(event.job_id, me, result, notes)

    async def _beat(self, job_id: int, me: str) -> None:
        """Stamp the job every ``BEAT_EVERY_S`` while this process analyses it."""
        assert self.ctx is not None
        while True:
            await asyncio.sleep(BEAT_EVERY_S)
            try:
                async with self.ctx.db.session() as session:
                    await session.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.worker == me)
                        .values(worker_seen_at=utcnow())
                    )
            except Exception as exc:
                log.warning("analysis heartbeat failed, will retry", job_id=job_id, error=repr(exc))

    @staticmethod
    async def _image_encodings(session: AsyncSession, rule_id: int | None) -> list[ImageEncoding]:
        """The distinct image encodings of the rule's enabled destinations, the one stored as
        the primary file first (the default when the rule names none)."""
        if rule_id is None:
            return ordered([])
        names = await session.scalars(
            select(Destination.image_encoding)
            .join(RuleDestination, RuleDestination.destination_id == Destination.id)
            .where(RuleDestination.rule_id == rule_id, Destination.enabled.is_(True))
        )
        return ordered(names)

    def _analyse(
        self, job_id: int, paths: list[Path], notes: list[str], encodings: list[ImageEncoding]
    ) -> AnalysisResult:
        """Load, segment, quantify, render and store (runs in a worker thread); ``notes``
        get the input notes once the series is read.

        A refusal passes through; any other error is raised as ``AnalysisError`` naming the
        step it stopped, with the error chained for the service log."""
        steps = ["reading the series"]
        try:
            return self._analyse_steps(job_id, paths, notes, encodings, steps.append)
        except Refusal:
            raise
        except Exception as error:
            raise AnalysisError(steps[-1]) from error

    def _analyse_steps(
        self,
        job_id: int,
        paths: list[Path],
        notes: list[str],
        encodings: list[ImageEncoding],
        step: Callable[[str], None],
    ) -> AnalysisResult:
        """The steps of ``_analyse``; ``step(name)`` is called as each one starts."""
        from pulmogate.inference.analysis import analyse
        from pulmogate.inference.outputs import input_notes, iter_outputs
        from pulmogate.inference.volume import load_volume

        assert self.ctx is not None
        settings = self.ctx.settings
        timings: dict[str, float] = {}
        t = time.perf_counter()
        volume = load_volume(
            paths,
            max_slice_thickness_mm=settings.max_slice_thickness_mm,
            min_slices=settings.min_slices,
        )
        timings["load"] = time.perf_counter() - t
        notes.extend(input_notes(volume))
        step("segmenting the lungs and lesions")
        analysis = analyse(volume, self.segmenter)
        timings.update(analysis.timings)
        step("building the DICOM results")
        # Objects are built and written one at a time: one overlay image in memory, not all.
        # A picture is stored once per image encoding of the job's destinations (the first
        # is its primary file), so no delivery, resend or C-MOVE encodes it again.
        timings["render"] = timings["encode"] = 0.0
        stored: list[StoredObject] = []
        t = time.perf_counter()
        for obj in iter_outputs(volume, analysis, language=settings.language):
            built = time.perf_counter()
            timings["render"] += built - t
            ds = obj.dataset
            sop_uid = str(ds.SOPInstanceUID)
            path = self.ctx.storage.result_path(job_id, obj.kind, sop_uid)
            for n, (encoding, form) in enumerate(stored_forms(ds, encodings)):
                target = (
                    path
                    if n == 0
                    else self.ctx.storage.result_path(job_id, obj.kind, sop_uid, encoding)
                )
                atomic_write(target, dataset_bytes(form))
            t = time.perf_counter()
            timings["encode"] += t - built
            stored.append(StoredObject.of(obj.kind, ds, path))
        figures = {
            side: {
                "lung_ml": round(f.lung_ml, 1),
                "ggo_ml": round(f.ggo_ml, 1),
                "consolidation_ml": round(f.consolidation_ml, 1),
                "percent": round(f.percent, 2),
            }
            for side, f in (
                ("right", analysis.right),
                ("left", analysis.left),
                ("total", analysis.total),
            )
        }
        verdict = Verdict(
            prediction=analysis.prediction(settings.language),
            grade=analysis.grade,
            percent=round(analysis.total.percent, 2),
            figures=figures,
            timings={k: round(v, 3) for k, v in timings.items()},
            model_name=analysis.model_name,
            model_version=analysis.model_version,
        )
        return AnalysisResult(verdict=verdict, outputs=stored)

    def _still_mine(self, job: Job | None, me: str, paths: list[Path]) -> bool:
        """The job is still this process's analysis; when it was deleted meanwhile, the
        files just written are removed (nothing else refers to them)."""
        assert self.ctx is not None
        if job is None:
            for path in paths:
                self.ctx.storage.remove(path)
            log.info("job deleted during its analysis; results discarded", files=len(paths))
            return False
        if job.status != JobStatus.ANALYSING or job.worker != me:
            log.warning(
                "job taken over during its analysis; results discarded",
                job_id=job.id,
                status=job.status,
                worker=job.worker,
            )
            return False
        return True

    async def _record(self, job_id: int, me: str, result: AnalysisResult, notes: list[str]) -> None:
        """Store the results (replacing any earlier ones) and announce them, in one
        transaction."""
        assert self.ctx is not None
        ctx = self.ctx
        async with ctx.db.session() as session:
            job = await session.get(Job, job_id, with_for_update=ctx.db.lock(Job))
            if not self._still_mine(job, me, [o.path for o in result.outputs]):
                return
            assert job is not None
            fresh = {o.sop_instance_uid for o in result.outputs}
            earlier = {
                o.sop_instance_uid: o
                for o in await session.scalars(
                    select(OutputObject).where(OutputObject.job_id == job_id)
                )
            }
            replaced = [Path(o.path) for uid, o in earlier.items() if uid not in fresh]
            if replaced:
                await session.execute(
                    delete(OutputObject).where(
                        OutputObject.job_id == job_id,
                        OutputObject.sop_instance_uid.not_in(fresh),
                    )
                )
            for out in result.outputs:
                row = earlier.get(out.sop_instance_uid)
                if row is None:
                    session.add(out.row(job_id))
                elif row.modality is None:  # recorded by a version that did not keep them
                    for column, value in out.attributes.columns().items():
                        setattr(row, column, value)
            record_analysis(job, result.verdict)
            for note in notes:  # attribute names, never values
                add_log(session, job_id, SERVICE, note, level="warning")
            kinds = sorted({o.kind for o in result.outputs})
            verdict = result.verdict
            add_log(
                session,
                job_id,
                SERVICE,
                f"analysis finished in {sum(verdict.timings.values()):.1f} s: "
                f"{verdict.prediction}; {len(result.outputs)} objects ({', '.join(kinds)})",
            )
            enqueue(session, AnalysisFinished(job_id=job_id, status=JobStatus.ANALYSED))
        for path in replaced:
            ctx.storage.remove(path)
        log.info("job analysed", job_id=job_id, grade=result.verdict.grade)

    async def _finish_refused(
        self, job_id: int, me: str, refusal: Refusal, notes: list[str]
    ) -> None:
        await self._finish(job_id, me, JobStatus.REJECTED, refusal, notes)

    async def _finish_failed(
        self, job_id: int, me: str, failure: Refusal, notes: list[str]
    ) -> None:
        await self._finish(job_id, me, JobStatus.FAILED, failure, notes)

    async def _finish(
        self, job_id: int, me: str, status: JobStatus, refusal: Refusal, notes: list[str]
    ) -> None:
        """End a job that could not be analysed, with its reason (and the input notes)."""
        code, reason = refusal.code, str(refusal)
        assert self.ctx is not None
        async with self.ctx.db.session() as session:
            job = await session.get(Job, job_id, with_for_update=self.ctx.db.lock(Job))
            if not self._still_mine(job, me, []):
                return
            assert job is not None
            end_analysis(job, status, code=code, reason=reason)
            for note in notes:  # attribute names, never values
                add_log(session, job_id, SERVICE, note, level="warning")
            add_log(session, job_id, SERVICE, reason, level="error")
            enqueue(session, AnalysisFinished(job_id=job_id, status=status))
        log.info("job not analysed", job_id=job_id, status=str(status), code=code)
