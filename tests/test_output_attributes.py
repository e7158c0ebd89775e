"""Result objects are answered to C-FIND from what inference recorded when it wrote them:
their files are not opened again (here they are gone, and the answer is whole)."""

import shutil
import subprocess
from pathlib import Path

from pydicom import Dataset, dcmread
from sqlalchemy import select

from pulmogate.common.db.models import Job, JobStatus, OutputObject
from pulmogate.common.events import AnalysisRequested
from pulmogate.inference.analysis import default_segmenter
from pulmogate.inference.service import InferenceService
from pulmogate.tools.phantom import make_phantom, write_series
from services.receiver.tests.helpers import AE_TITLE, run_tool, start_receiver


async def _findscu(port: int, out: Path, *keys: str) -> list[Dataset]:
    out.mkdir(parents=True)
    args = ["/usr/bin/findscu", "-S", "-aet", "WORKSTATION", "-aec", AE_TITLE, "-X", "-od"]
    key_args = [arg for key in keys for arg in ("-k", key)]
    done = await run_tool(*args, str(out), "127.0.0.1", str(port), *key_args)
    assert done.returncode == 0, done.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


async def test_query_answers_the_outputs_recorded_attributes_after_their_files_are_gone(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "ct"
    write_series(
        make_phantom(slices=24, size=128, slice_thickness_mm=2.5, pixel_spacing_mm=2.8),
        folder,
        seed=3,
    )
    study_uid = str(dcmread(next(folder.iterdir()), stop_before_pixels=True).StudyInstanceUID)
    async with start_receiver(tmp_path / "data", "") as rx:
        sent = subprocess.run(
            ["/usr/bin/storescu", "-aet", "CT", "-aec", AE_TITLE, "127.0.0.1", str(rx.port)]
            + [str(p) for p in sorted(folder.iterdir())],
            capture_output=True,
        )
        assert sent.returncode == 0, sent.stderr
        series_uid = str(dcmread(next(folder.iterdir())).SeriesInstanceUID)
        series = await rx.wait_status(series_uid, "complete")
        async with rx.ctx.db.session() as session:
            job = Job(series_id=series.id, status=JobStatus.QUEUED)  # as the router queues it
            session.add(job)
            await session.flush()
            job_id = job.id
        inference = InferenceService()
        inference.ctx, inference.segmenter = rx.ctx, default_segmenter("qct")
        await inference.on_event(AnalysisRequested(job_id=job_id))

        async with rx.ctx.db.session() as session:
            assert (await session.get(Job, job_id)).status == JobStatus.ANALYSED  # type: ignore[union-attr]
            rows = list(
                await session.scalars(select(OutputObject).where(OutputObject.job_id == job_id))
            )
        assert {r.kind for r in rows} >= {"overlay", "summary", "sr", "seg"}
        written = {}
        for row in rows:  # recorded as the files say, before anyone read them
            ds = dcmread(row.path, stop_before_pixels=True)
            written[row.sop_instance_uid] = ds
            assert (row.modality, row.series_number, row.instance_number) == (
                ds.Modality,
                int(ds.SeriesNumber),
                int(ds.InstanceNumber),
            )
            assert row.series_description == ds.SeriesDescription
        shutil.rmtree(rx.ctx.storage.root / "results")

        found = await _findscu(
            rx.port,
            tmp_path / "series",
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={study_uid}",
            "SeriesInstanceUID",
            "Modality",
            "SeriesNumber",
        )
        images = await _findscu(
            rx.port,
            tmp_path / "images",
            "QueryRetrieveLevel=IMAGE",
            f"StudyInstanceUID={study_uid}",
            f"SeriesInstanceUID={rows[0].series_uid}",
            "SOPInstanceUID",
            "InstanceNumber",
        )
    expected = {
        str(ds.SeriesInstanceUID): (ds.Modality, int(ds.SeriesNumber)) for ds in written.values()
    }
    answered = {str(d.SeriesInstanceUID): (d.Modality, int(d.SeriesNumber)) for d in found}
    assert answered == {series_uid: ("CT", answered[series_uid][1]), **expected}
    assert {str(d.SOPInstanceUID): int(d.InstanceNumber) for d in images} == {
        uid: int(ds.InstanceNumber)
        for uid, ds in written.items()
        if str(ds.SeriesInstanceUID) == rows[0].series_uid
    }
