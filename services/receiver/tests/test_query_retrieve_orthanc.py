"""Orthanc as the workstation: it finds PulmoGate's studies and series and pulls them by C-MOVE."""

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from pulmogate.common.db.models import Destination
from services.receiver.tests.helpers import AE_TITLE, ReceiverFactory
from services.receiver.tests.qr_data import HeldStudy, hold_study, unique_id
from tests.fixtures.orthanc import Orthanc, run_orthanc


def _query(client: httpx.Client, level: str, query: dict[str, str]) -> tuple[str, list[Any]]:
    """POST /modalities/pulmogate/query; the query id and its simplified answers."""
    made = client.post("/modalities/pulmogate/query", json={"Level": level, "Query": query})
    made.raise_for_status()
    query_id = made.json()["ID"]
    count = len(client.get(f"/queries/{query_id}/answers").json())
    answers = [
        client.get(f"/queries/{query_id}/answers/{n}/content", params={"simplify": 1}).json()
        for n in range(count)
    ]
    return query_id, answers


def _query_and_retrieve(orthanc: Orthanc, study: HeldStudy) -> dict[str, Any]:
    with orthanc.client() as client:
        _, studies = _query(
            client,
            "Study",
            {
                "PatientID": study.patient_id,
                "PatientName": "",
                "StudyDate": "20260101-20261231",
                "StudyDescription": "",
                "ModalitiesInStudy": "",
                "NumberOfStudyRelatedInstances": "",
            },
        )
        series_query, series = _query(
            client,
            "Series",
            {"StudyInstanceUID": study.study_uid, "Modality": "OT", "SeriesDescription": ""},
        )
        moved = client.post(
            f"/queries/{series_query}/retrieve",
            json={"TargetAet": orthanc.aet, "Synchronous": True},
        )
        moved.raise_for_status()
        deadline = time.monotonic() + 20
        held: list[str] = []
        while time.monotonic() < deadline and len(held) < len(study.overlay_sops):
            instances = client.get("/instances", params={"expand": 1}).json()
            held = [i["MainDicomTags"]["SOPInstanceUID"] for i in instances]
            time.sleep(0.2)
    return {"studies": studies, "series": series, "held": held}


async def test_orthanc_finds_and_moves_results_from_pulmogate(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    async with receiver_on(accept_from="any") as rx:
        study = await hold_study(
            rx,
            tmp_path,
            HeldStudy("PHANTOM^ORTHANC", unique_id("QRO"), "20260301"),
            overlay=2,
            sr=True,
        )
        modalities = {"pulmogate": [AE_TITLE, "127.0.0.1", rx.port]}
        (tmp_path / "orthanc").mkdir()
        with run_orthanc(tmp_path / "orthanc", modalities) as orthanc:
            async with rx.ctx.db.session() as session:
                session.add(
                    Destination(
                        name=f"orthanc-{study.patient_id}",
                        host="127.0.0.1",
                        port=orthanc.dicom_port,
                        ae_title=orthanc.aet,
                    )
                )
            seen = await asyncio.to_thread(_query_and_retrieve, orthanc, study)
    assert len(seen["studies"]) == 1
    found = seen["studies"][0]
    assert found["StudyInstanceUID"] == study.study_uid
    assert found["PatientName"] == "PHANTOM^ORTHANC"
    assert found["StudyDescription"] == "CT CHEST QR"
    assert found["NumberOfStudyRelatedInstances"] == "6"
    assert sorted(found["ModalitiesInStudy"].split("\\")) == ["CT", "OT", "SR"]
    assert [s["SeriesInstanceUID"] for s in seen["series"]] == [study.overlay_series_uid]
    assert seen["series"][0]["SeriesDescription"] == "PulmoGate lesions (qct 1.0)"
    assert sorted(seen["held"]) == sorted(study.overlay_sops)


def _names(orthanc: Orthanc, patient_id: str, patterns: list[str]) -> dict[str, list[str]]:
    """Orthanc's C-FIND (its default encoding: Latin-1, ISO_IR 100) for each name pattern."""
    found: dict[str, list[str]] = {}
    with orthanc.client() as client:
        for pattern in patterns:
            _, answers = _query(
                client, "Study", {"PatientID": f"{patient_id}*", "PatientName": pattern}
            )
            found[pattern] = sorted(a["PatientName"] for a in answers)
    return found


async def test_orthanc_finds_a_non_ascii_name_in_latin_1(
    receiver_on: ReceiverFactory, tmp_path: Path
) -> None:
    """The embedded gateway (SQLite, whose own lower() folds ASCII only) answers Orthanc."""
    patient_id = unique_id("QRL")
    async with receiver_on(accept_from="any", sqlite=True) as rx:
        await hold_study(
            rx, tmp_path, HeldStudy("MÜLLER^JÖRG", patient_id, "20260301", charset="ISO_IR 100")
        )
        modalities = {"pulmogate": [AE_TITLE, "127.0.0.1", rx.port]}
        (tmp_path / "orthanc").mkdir()
        with run_orthanc(tmp_path / "orthanc", modalities) as orthanc:
            found = await asyncio.to_thread(
                _names, orthanc, patient_id, ["MÜLLER*", "MÜLLER^JÖRG", "Müller*", "M*", "X*"]
            )
    assert found == {
        "MÜLLER*": ["MÜLLER^JÖRG"],
        "MÜLLER^JÖRG": ["MÜLLER^JÖRG"],
        "Müller*": ["MÜLLER^JÖRG"],
        "M*": ["MÜLLER^JÖRG"],
        "X*": [],
    }
