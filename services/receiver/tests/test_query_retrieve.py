"""Query/Retrieve against the receiver's AE with dcmtk findscu, movescu, getscu and pynetdicom."""

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from pulmogate.common.db.models import Destination, RoutingRule
from pulmogate.common.dicom.encoding import ImageEncoding
from pulmogate.receiver.retrieve import ready_to_send
from services.receiver.tests.helpers import AE_TITLE, ReceiverFactory, RunningReceiver, run_tool
from services.receiver.tests.qr_data import HeldStudy, hold_study, result_object, unique_id
from tests.fixtures.infra import free_port


def dcm_keys(*keys: str) -> list[str]:
    """dcmtk ``-k key[=value]`` arguments."""
    return [arg for key in keys for arg in ("-k", key)]


async def findscu(
    port: int, out: Path, *keys: str, model: str = "-S", calling: str = "WORKSTATION"
) -> list[Dataset]:
    """Run dcmtk findscu and read back every response identifier it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    args = ["/usr/bin/findscu", model, "-aet", calling, "-aec", AE_TITLE, "-X", "-od"]
    done = await run_tool(*args, str(out), "127.0.0.1", str(port), *dcm_keys(*keys))
    assert done.returncode == 0, done.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
async def test_study_level_find_returns_the_keys_a_viewer_asks_for(
    receiver_on: ReceiverFactory, tmp_path: Path, backend: str
) -> None:
    async with receiver_on(sqlite=backend == "sqlite", accept_from="any") as rx:
        study = await hold_study(
            rx,
            tmp_path,
            HeldStudy("PHANTOM^ONE", unique_id("QRS"), "20260105"),
            overlay=2,
            sr=True,
        )
        found = await findscu(
            rx.port,
            tmp_path / "find",
            "QueryRetrieveLevel=STUDY",
            f"PatientID={study.patient_id}",
            "PatientName",
            "PatientBirthDate",
            "StudyInstanceUID",
            "StudyDate",
            "StudyTime",
            "AccessionNumber",
            "StudyDescription",
            "ModalitiesInStudy",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
            "RetrieveAETitle",
        )
    assert len(found) == 1
    ds = found[0]
    assert ds.StudyInstanceUID == study.study_uid
    assert str(ds.PatientName) == "PHANTOM^ONE"
    assert ds.PatientBirthDate == "19700101"
    assert (ds.StudyDate, ds.StudyTime, ds.StudyDescription) == (
        "20260105",
        "101500",
        "CT CHEST QR",
    )
    assert ds.AccessionNumber == f"A{study.patient_id[-8:]}"
    assert sorted(ds.ModalitiesInStudy) == ["CT", "OT", "SR"]
    assert int(ds.NumberOfStudyRelatedSeries) == 3
    assert int(ds.NumberOfStudyRelatedInstances) == 3 + 2 + 1
    assert ds.RetrieveAETitle == AE_TITLE
    assert ds.QueryRetrieveLevel == "STUDY"


async def test_matching_wildcards_date_ranges_uid_lists_and_modalities(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    prefix = unique_id("QRM")
    async with receiver_on(accept_from="any") as rx:
        early = await hold_study(
            rx, tmp_path, HeldStudy("PHANTOM^EARLY", f"{prefix}-1", "20250301")
        )
        late = await hold_study(
            rx, tmp_path, HeldStudy("PHANTOM^LATE", f"{prefix}-2", "20260420"), overlay=1
        )
        other = await hold_study(rx, tmp_path, HeldStudy("OTHER^THREE", f"{prefix}-3", "20260421"))

        async def studies(*keys: str) -> set[str]:
            out = tmp_path / f"f{len(list(tmp_path.glob('f*')))}"
            found = await findscu(
                rx.port, out, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", *keys
            )
            return {str(d.StudyInstanceUID) for d in found} & {
                early.study_uid,
                late.study_uid,
                other.study_uid,
            }

        assert await studies(f"PatientID={prefix}-*") == {
            early.study_uid,
            late.study_uid,
            other.study_uid,
        }
        assert await studies(f"PatientID={prefix}-?", "PatientName=phantom*") == {
            early.study_uid,
            late.study_uid,
        }
        assert await studies(f"PatientID={prefix}*", "StudyDate=20260101-") == {
            late.study_uid,
            other.study_uid,
        }
        assert await studies(f"PatientID={prefix}*", "StudyDate=-20251231") == {early.study_uid}
        assert await studies(f"PatientID={prefix}*", "StudyDate=20260420-20260420") == {
            late.study_uid
        }
        assert await studies(f"StudyInstanceUID={early.study_uid}\\{other.study_uid}") == {
            early.study_uid,
            other.study_uid,
        }
        assert await studies(f"PatientID={prefix}*", "ModalitiesInStudy=OT") == {late.study_uid}
        assert await studies(f"PatientID={prefix}-3", "PatientName=PHANTOM*") == set()
        # Patient Root, PATIENT level: one answer per patient with related counts.
        patients = await findscu(
            rx.port,
            tmp_path / "patients",
            "QueryRetrieveLevel=PATIENT",
            f"PatientID={prefix}-2",
            "PatientName",
            "NumberOfPatientRelatedStudies",
            "NumberOfPatientRelatedSeries",
            "NumberOfPatientRelatedInstances",
            model="-P",
        )
    assert len(patients) == 1
    assert str(patients[0].PatientName) == "PHANTOM^LATE"
    assert int(patients[0].NumberOfPatientRelatedStudies) == 1
    assert int(patients[0].NumberOfPatientRelatedSeries) == 2
    assert int(patients[0].NumberOfPatientRelatedInstances) == 4


def _in_charset(value: str, charset: str) -> str:
    """``value`` as findscu must get it on its command line to send it in ``charset``."""
    codec = {"ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}[charset]
    return value.encode(codec).decode("utf-8", "surrogateescape")


@pytest.mark.parametrize("sqlite", [False, True], ids=["postgres", "sqlite"])
@pytest.mark.parametrize("stored", ["ISO_IR 100", "ISO_IR 192"])
@pytest.mark.parametrize("asked", ["ISO_IR 100", "ISO_IR 192"])
async def test_non_ascii_names_match_in_any_character_set(
    receiver_on: ReceiverFactory, tmp_path: Path, sqlite: bool, stored: str, asked: str
) -> None:
    """MÜLLER^JÖRG held from a Latin-1 or UTF-8 series is found by findscu asking in either,
    by wildcard or the exact name, whatever the case and accents (docs/conformance.md)."""
    patient_id = unique_id("QRC")
    async with receiver_on(accept_from="any", sqlite=sqlite) as rx:
        study = await hold_study(
            rx, tmp_path, HeldStudy("MÜLLER^JÖRG", patient_id, "20260301", charset=stored)
        )
        other = await hold_study(
            rx, tmp_path, HeldStudy("MUELLER^ANNA", f"{patient_id}-2", "20260301")
        )

        async def names(pattern: str) -> list[str]:
            out = tmp_path / f"f{len(list(tmp_path.glob('f*')))}"
            found = await findscu(
                rx.port,
                out,
                "QueryRetrieveLevel=STUDY",
                f"SpecificCharacterSet={asked}",
                f"PatientID={patient_id}*",
                f"PatientName={_in_charset(pattern, asked)}",
            )
            assert all(d.SpecificCharacterSet == "ISO_IR 192" for d in found)
            return sorted(str(d.PatientName) for d in found)

        assert await names("MÜLLER*") == ["MÜLLER^JÖRG"]
        assert await names("MÜLLER^JÖRG") == ["MÜLLER^JÖRG"]
        assert await names("müller^jörg") == ["MÜLLER^JÖRG"]
        assert await names("MULLER*") == ["MÜLLER^JÖRG"]  # accent-insensitive
        assert await names("M?LLER^J?RG") == ["MÜLLER^JÖRG"]
        assert await names("MÜLLERS*") == []
        assert await names("M*") == ["MUELLER^ANNA", "MÜLLER^JÖRG"]
    assert study.study_uid != other.study_uid


async def test_series_and_image_levels_list_received_and_result_objects(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    async with receiver_on(accept_from="any") as rx:
        study = await hold_study(
            rx, tmp_path, HeldStudy("PHANTOM^SERIES", unique_id("QRI"), "20260105"), overlay=2
        )
        series = await findscu(
            rx.port,
            tmp_path / "series",
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={study.study_uid}",
            "SeriesInstanceUID",
            "Modality",
            "SeriesNumber",
            "SeriesDescription",
            "NumberOfSeriesRelatedInstances",
        )
        images = await findscu(
            rx.port,
            tmp_path / "images",
            "QueryRetrieveLevel=IMAGE",
            f"StudyInstanceUID={study.study_uid}",
            f"SeriesInstanceUID={study.overlay_series_uid}",
            "SOPInstanceUID",
            "SOPClassUID",
            "InstanceNumber",
        )
        ct_only = await findscu(
            rx.port,
            tmp_path / "ct",
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={study.study_uid}",
            "SeriesInstanceUID",
            "Modality=CT",
            "SeriesNumber=3",
        )
    by_uid = {str(d.SeriesInstanceUID): d for d in series}
    assert set(by_uid) == {study.ct_series_uid, study.overlay_series_uid}
    ct, overlay = by_uid[study.ct_series_uid], by_uid[study.overlay_series_uid]
    assert (ct.Modality, int(ct.SeriesNumber), ct.SeriesDescription) == ("CT", 3, "Axial 1.25")
    assert int(ct.NumberOfSeriesRelatedInstances) == 3
    assert (overlay.Modality, int(overlay.SeriesNumber)) == ("OT", 9000)
    assert overlay.SeriesDescription == "PulmoGate lesions (qct 1.0)"
    assert int(overlay.NumberOfSeriesRelatedInstances) == 2
    assert [(str(d.SOPInstanceUID), int(d.InstanceNumber)) for d in images] == [
        (study.overlay_sops[0], 1),
        (study.overlay_sops[1], 2),
    ]
    assert {d.SOPClassUID for d in images} == {SecondaryCaptureImageStorage}
    assert [str(d.SeriesInstanceUID) for d in ct_only] == [study.ct_series_uid]


async def test_purged_jobs_disappear_from_queries(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    prefix = unique_id("QRP")
    async with receiver_on(accept_from="any") as rx:
        kept = await hold_study(
            rx, tmp_path, HeldStudy("PHANTOM^KEPT", f"{prefix}-1", "20260105"), overlay=1
        )
        purged = await hold_study(
            rx,
            tmp_path,
            HeldStudy("PHANTOM^PURGED", f"{prefix}-2", "20260105"),
            overlay=1,
            purged=True,
        )
        found = await findscu(
            rx.port,
            tmp_path / "series",
            "QueryRetrieveLevel=SERIES",
            f"PatientID={prefix}*",
            "StudyInstanceUID",
            "SeriesInstanceUID",
        )
    assert {str(d.SeriesInstanceUID) for d in found} == {
        kept.ct_series_uid,
        kept.overlay_series_uid,
    }
    assert purged.study_uid not in {str(d.StudyInstanceUID) for d in found}


async def test_bad_level_is_refused_with_a_reason(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    async with receiver_on(accept_from="any") as rx:

        def query() -> list[tuple[int, str]]:
            ae = AE(ae_title="WORKSTATION")
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
            assoc = ae.associate("127.0.0.1", rx.port, ae_title=AE_TITLE)
            assert assoc.is_established
            identifier = Dataset()
            identifier.QueryRetrieveLevel = "PATIENT"
            identifier.PatientID = "*"
            try:
                return [
                    (int(status.Status), str(status.get("ErrorComment", "")))
                    for status, _ in assoc.send_c_find(
                        identifier, StudyRootQueryRetrieveInformationModelFind
                    )
                ]
            finally:
                assoc.release()

        answers = await asyncio.to_thread(query)
    assert answers == [(0xA900, "Study Root has no PATIENT level")]


@contextmanager
def run_storescp(folder: Path, *options: str) -> Iterator[tuple[str, int, Path]]:
    """A dcmtk storescp move destination on a free port: (AE title, port, folder)."""
    port, out = free_port(), folder
    aet = f"VIEWER{uuid.uuid4().hex[:8].upper()}"  # the module's tests share one database
    out.mkdir()
    proc = subprocess.Popen(
        ["/usr/bin/storescp", *options, "-aet", aet, "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):  # listening?
            echo = ["/usr/bin/echoscu", "-aec", aet, "127.0.0.1", str(port)]
            if subprocess.run(echo, capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.05)
        yield aet, port, out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    """storescp as dcmtk ships it: it accepts the uncompressed transfer syntaxes only."""
    with run_storescp(tmp_path / "moved") as destination:
        yield destination


async def _add_destination(rx: RunningReceiver, name: str, aet: str, port: int) -> None:
    async with rx.ctx.db.session() as session:
        session.add(Destination(name=name, host="127.0.0.1", port=port, ae_title=aet))


async def movescu(
    rx: RunningReceiver, destination_ae: str, study_uid: str
) -> subprocess.CompletedProcess[str]:
    """dcmtk movescu: the study to ``destination_ae``."""
    return await run_tool(
        *("/usr/bin/movescu", "-v", "-S", "-aet", "WORKSTATION", "-aec", AE_TITLE),
        *("-aem", destination_ae, "127.0.0.1", str(rx.port)),
        *dcm_keys("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study_uid}"),
    )


async def getscu(rx: RunningReceiver, folder: Path, *keys: str) -> subprocess.CompletedProcess[str]:
    """dcmtk getscu into ``folder`` (it accepts the uncompressed syntaxes unless told more)."""
    return await run_tool(
        *("/usr/bin/getscu", "-v", "-S", "-aet", "WORKSTATION", "-aec", AE_TITLE),
        *("-od", str(folder), "127.0.0.1", str(rx.port)),
        *dcm_keys(*keys),
    )


async def test_movescu_sends_a_study_to_a_configured_destination(
    receiver_on: ReceiverFactory, tmp_path: Path, storescp: tuple[str, int, Path]
) -> None:
    dest_ae, dest_port, moved = storescp
    async with receiver_on(accept_from="any") as rx:
        study = await hold_study(
            rx,
            tmp_path,
            HeldStudy("PHANTOM^MOVE", unique_id("QRV"), "20260105"),
            overlay=2,
            sr=True,
        )
        await _add_destination(rx, f"viewer-{study.patient_id}", dest_ae, dest_port)
        done = await movescu(rx, dest_ae, study.study_uid)
        assert done.returncode == 0, done.stderr
        unknown = await movescu(rx, "NOBODY", study.study_uid)
    received = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in moved.iterdir()}
    assert received == study.all_sops
    log = done.stdout + done.stderr
    assert "Received Final Move Response (Success)" in log, log
    assert log.count("(Pending)") == 6, log
    refused = unknown.stdout + unknown.stderr
    assert "Final Move Response (Refused: MoveDestinationUnknown)" in refused, refused


def _compressed_study(name: str) -> HeldStudy:
    """CT received RLE-compressed, overlay pictures stored as JPEG (the default encoding)."""
    return HeldStudy(
        name,
        unique_id("QRX"),
        "20260106",
        overlay_encoding=ImageEncoding.JPEG,
        ct_syntax=RLELossless,
    )


def _syntaxes(folder: Path) -> dict[str, UID]:
    """SOP Instance UID -> transfer syntax of each file received."""
    return {
        str(ds.SOPInstanceUID): UID(ds.file_meta.TransferSyntaxUID)
        for ds in (dcmread(p) for p in folder.iterdir())
    }


def _same_pixels_as_stored(rx: RunningReceiver, study: HeldStudy, folder: Path) -> None:
    """Each received CT slice has the pixels of the file PulmoGate holds (decoded)."""
    incoming = rx.ctx.storage.incoming_folder()
    held = {str(ds.SOPInstanceUID): ds for ds in map(dcmread, incoming.rglob("*.dcm"))}
    for path in folder.iterdir():
        got = dcmread(path)
        sop = str(got.SOPInstanceUID)
        if sop in study.ct_sops:
            assert np.array_equal(got.pixel_array, held[sop].pixel_array), sop


async def test_a_move_to_a_viewer_taking_only_uncompressed_gets_compressed_instances_decoded(
    receiver_on: ReceiverFactory, tmp_path: Path, storescp: tuple[str, int, Path]
) -> None:
    dest_ae, dest_port, moved = storescp
    async with receiver_on(accept_from="any") as rx:
        study = await hold_study(rx, tmp_path, _compressed_study("PHANTOM^PLAIN"), overlay=2)
        await _add_destination(rx, f"plain-{study.patient_id}", dest_ae, dest_port)
        done = await movescu(rx, dest_ae, study.study_uid)
        log = done.stdout + done.stderr
        assert "Received Final Move Response (Success)" in log, log
        syntaxes = _syntaxes(moved)
        assert syntaxes.keys() == study.all_sops
        assert {s for s in syntaxes.values() if s.is_compressed} == set()
        _same_pixels_as_stored(rx, study, moved)
    for sop in study.overlay_sops:
        overlay = dcmread(next(p for p in moved.iterdir() if dcmread(p).SOPInstanceUID == sop))
        assert overlay.LossyImageCompression == "01"  # decoded, still lossy
        assert overlay.PhotometricInterpretation == "RGB"
        assert overlay.pixel_array.shape == (16, 16, 3)


async def test_a_move_to_a_peer_taking_the_stored_syntaxes_gets_them_as_stored(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    with run_storescp(tmp_path / "moved", "+xa") as (dest_ae, dest_port, moved):
        async with receiver_on(accept_from="any") as rx:
            study = await hold_study(rx, tmp_path, _compressed_study("PHANTOM^ALL"), overlay=2)
            await _add_destination(rx, f"all-{study.patient_id}", dest_ae, dest_port)
            done = await movescu(rx, dest_ae, study.study_uid)
            assert "Received Final Move Response (Success)" in done.stdout + done.stderr
            syntaxes = _syntaxes(moved)
    assert {syntaxes[s] for s in study.ct_sops} == {RLELossless}
    assert {syntaxes[s] for s in study.overlay_sops} == {JPEGBaseline8Bit}


async def test_a_get_by_a_requestor_taking_only_uncompressed_gets_compressed_instances_decoded(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    async with receiver_on(accept_from="any") as rx:
        study = await hold_study(rx, tmp_path, _compressed_study("PHANTOM^GETPLAIN"), overlay=2)
        got = tmp_path / "got"
        got.mkdir()
        done = await getscu(
            rx, got, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study.study_uid}"
        )
        assert done.returncode == 0, done.stderr
        log = done.stdout + done.stderr
        assert "Number of Completed Suboperations : 5" in log, log
        assert "Number of Failed Suboperations    : 0" in log, log
        syntaxes = _syntaxes(got)
        assert syntaxes.keys() == {*study.ct_sops, *study.overlay_sops}
        assert {s for s in syntaxes.values() if s.is_compressed} == set()
        _same_pixels_as_stored(rx, study, got)


def test_an_instance_goes_as_stored_decoded_or_not_at_all() -> None:
    study = _compressed_study("PHANTOM^UNIT")
    picture = result_object(study, generate_uid(), 0, sr=False)
    assert ready_to_send(picture, {JPEGBaseline8Bit}) is picture
    plain = ready_to_send(picture, {ImplicitVRLittleEndian})
    assert plain is not None and plain is not picture
    assert plain.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian  # pynetdicom converts
    assert plain.LossyImageCompression == "01"
    assert ready_to_send(picture, {JPEGLSLossless}) is None  # no transcoding between codecs


async def test_getscu_retrieves_a_series_on_the_same_association_and_counts_failures(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    async with receiver_on(accept_from="any") as rx:
        study = await hold_study(
            rx, tmp_path, HeldStudy("PHANTOM^GET", unique_id("QRG"), "20260105"), overlay=2
        )
        got = tmp_path / "got"
        got.mkdir()
        series = ("QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study.study_uid}")
        done = await getscu(rx, got, *series, f"SeriesInstanceUID={study.ct_series_uid}")
        assert done.returncode == 0, done.stderr
        assert {str(dcmread(p).SOPInstanceUID) for p in got.iterdir()} == set(study.ct_sops)
        # One result file lost on disk: that sub-operation fails, the rest complete (warning).
        lost = rx.ctx.storage.result_path(study.job_id or 0, "overlay", study.overlay_sops[0])
        os.unlink(lost)
        again = await getscu(rx, got, *series, f"SeriesInstanceUID={study.overlay_series_uid}")
    log = again.stdout + again.stderr
    assert "Completed Suboperations : 1" in log and "Failed Suboperations    : 1" in log, log
    assert "Warning" in log, log


async def test_cget_cancel_stops_the_remaining_sub_operations(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    async with receiver_on(accept_from="any") as rx:
        study = await hold_study(
            rx, tmp_path, HeldStudy("PHANTOM^CANCEL", unique_id("QRC"), "20260105"), slices=5
        )

        def get_and_cancel() -> list[tuple[int, int | None, int | None]]:
            ae = AE(ae_title="WORKSTATION")
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
            ae.add_requested_context(CTImageStorage)
            stored: list[str] = []
            holder: dict[str, object] = {}

            def on_store(event):
                stored.append(str(event.request.AffectedSOPInstanceUID))
                if len(stored) == 1:
                    assoc = holder["assoc"]
                    cx = next(
                        c
                        for c in assoc.accepted_contexts  # type: ignore[attr-defined]
                        if c.abstract_syntax == StudyRootQueryRetrieveInformationModelGet
                    )
                    assoc.send_c_cancel(7, cx.context_id)  # type: ignore[attr-defined]
                return 0x0000

            assoc = ae.associate(
                "127.0.0.1",
                rx.port,
                ae_title=AE_TITLE,
                ext_neg=[build_role(CTImageStorage, scp_role=True)],
                evt_handlers=[(evt.EVT_C_STORE, on_store)],
            )
            holder["assoc"] = assoc
            assert assoc.is_established
            identifier = Dataset()
            identifier.QueryRetrieveLevel = "SERIES"
            identifier.StudyInstanceUID = study.study_uid
            identifier.SeriesInstanceUID = study.ct_series_uid
            try:
                return [
                    (
                        int(status.Status),
                        status.get("NumberOfCompletedSuboperations"),
                        status.get("NumberOfRemainingSuboperations"),
                    )
                    for status, _ in assoc.send_c_get(
                        identifier, StudyRootQueryRetrieveInformationModelGet, msg_id=7
                    )
                ]
            finally:
                assoc.release()

        answers = await asyncio.to_thread(get_and_cancel)
    assert answers[-1][0] == 0xFE00, answers
    assert answers[-1][1] is not None and answers[-1][1] < 5
    assert answers[-1][2] is not None and answers[-1][2] > 0


async def test_under_reject_result_storage_classes_are_not_accepted_for_c_store(
    receiver_on: ReceiverFactory,
) -> None:
    async with receiver_on(accept_from="any", non_ct_objects="reject") as rx:

        def contexts(with_role: bool) -> set[str]:
            ae = AE(ae_title="MODALITY1")
            ae.add_requested_context(SecondaryCaptureImageStorage)
            ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
            roles: list[Any] = (
                [build_role(SecondaryCaptureImageStorage, scp_role=True)] if with_role else []
            )
            assoc = ae.associate("127.0.0.1", rx.port, ae_title=AE_TITLE, ext_neg=roles)
            try:
                return {str(c.abstract_syntax) for c in assoc.accepted_contexts}
            finally:
                assoc.release()

        plain = await asyncio.to_thread(contexts, False)
        for_get = await asyncio.to_thread(contexts, True)
    assert plain == {PatientRootQueryRetrieveInformationModelFind}
    assert for_get == {PatientRootQueryRetrieveInformationModelFind, SecondaryCaptureImageStorage}


async def test_source_policy_applies_to_query_retrieve_as_to_c_store(
    receiver_on: ReceiverFactory, tmp_path: Path, storescp: tuple[str, int, Path]
) -> None:
    dest_ae, dest_port, moved = storescp
    async with receiver_on(accept_from="rules", accept_echo_from_unknown=True) as rx:
        async with rx.ctx.db.session() as session:
            session.add(
                RoutingRule(name=f"from-{uuid.uuid4().hex[:8]}", source_ae_title="MODALITY1")
            )
            session.add(
                Destination(
                    name=f"viewer-{uuid.uuid4().hex[:8]}",
                    host="127.0.0.1",
                    port=dest_port,
                    ae_title=dest_ae,
                )
            )
        study = await hold_study(
            rx, tmp_path, HeldStudy("PHANTOM^POLICY", unique_id("QRA"), "20260105")
        )

        def requests(calling_ae: str) -> list[tuple[int, Any]]:
            ae = AE(ae_title=calling_ae)
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
            roles: list[Any] = [build_role(CTImageStorage, scp_role=True)]
            ae.add_requested_context(CTImageStorage)
            assoc = ae.associate(
                "127.0.0.1",
                rx.port,
                ae_title=AE_TITLE,
                ext_neg=roles,
                evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)],
            )
            assert assoc.is_established
            identifier = Dataset()
            identifier.QueryRetrieveLevel = "STUDY"
            identifier.StudyInstanceUID = study.study_uid
            try:
                find = [
                    (int(s.Status), str(s.get("ErrorComment", "")))
                    for s, _ in assoc.send_c_find(
                        identifier, StudyRootQueryRetrieveInformationModelFind
                    )
                ]
                get = [
                    (int(s.Status), str(s.get("ErrorComment", "")))
                    for s, _ in assoc.send_c_get(
                        identifier, StudyRootQueryRetrieveInformationModelGet
                    )
                ]
                move = [
                    (int(s.Status), str(s.get("ErrorComment", "")))
                    for s, _ in assoc.send_c_move(
                        identifier, dest_ae, StudyRootQueryRetrieveInformationModelMove
                    )
                ]
                return [find[-1], get[-1], (len(find), len(get)), move[-1]]
            finally:
                assoc.release()

        stranger = await asyncio.to_thread(requests, "WORKSTATION")
        moved_for_stranger = list(moved.iterdir())
        named = await asyncio.to_thread(requests, "MODALITY1")
        found = await findscu(
            rx.port, tmp_path / "named", "QueryRetrieveLevel=STUDY",
            f"StudyInstanceUID={study.study_uid}", calling="MODALITY1",
        )  # fmt: skip
    refusal = (0x0124, "sender not named by any enabled rule")
    assert stranger[:2] == [refusal, refusal]
    assert stranger[3] == refusal  # C-MOVE too (it answered 0xC515 before)
    assert moved_for_stranger == []  # the stranger's C-MOVE sent nothing
    assert named[3] == (0x0000, "")
    assert named[0] == (0x0000, "") and named[1][0] == 0x0000
    assert named[2][0] == 2  # one match, then success
    assert [str(d.StudyInstanceUID) for d in found] == [study.study_uid]
