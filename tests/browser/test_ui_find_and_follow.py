"""An operator finds a patient's job and watches it, in a real browser (Debian's Chromium
driven by Playwright) against `pulmogate up`.

A series of MÜLLER^JÖRG arrives from a modality while the operator has the results page
open: the page shows it arriving (images so far), then its job, without anyone reloading
(static/refresh.js). The destination is down at first, so the job stays `delivering`; its
page shows the patient and keeps itself current until the destination comes up and the
job is done. A search for `muller` (no accent, lower case) finds it; the row shows the
received time, the patient ID, the accession number and the study date.
"""

import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulmogate.tools.phantom import make_phantom, write_series
from tests.fixtures import quirks
from tests.fixtures.browser import (
    BROWSER_MARKS,
    artifacts_folder,
    chromium,
    playwright_sync,
    sign_in,
)
from tests.fixtures.gateway import Gateway, add_route, run_gateway, storescu
from tests.fixtures.infra import free_port

pytestmark = BROWSER_MARKS
NAME, PATIENT_ID, ACCESSION = "MÜLLER^JÖRG", "HOSP-0042", "ACC-77812"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go."""
    return artifacts_folder(tmp_path_factory, "browser-find")


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-slice phantom of MÜLLER^JÖRG (UTF-8), with an accession number and study date."""
    folder = tmp_path_factory.mktemp("patient")
    write_series(
        make_phantom(
            slices=20, size=128, pixel_spacing_mm=2.7, slice_thickness_mm=2.5, involvement=0.3
        ),
        folder / "written",
        patient_id=PATIENT_ID,
        seed=33,
    )
    datasets = quirks.read(folder / "written")
    for ds in datasets:
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = NAME
        ds.AccessionNumber = ACCESSION
        ds.StudyDate = "20260305"
    quirks.write(datasets, folder / "series")
    return folder / "series"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, int, Path]]:
    """The embedded gateway; a slow quiet period, so the series is seen arriving; a rule
    for the modality whose destination (a storescp, started by the test) is down."""
    tmp = tmp_path_factory.mktemp("browser-find")
    env = {
        "PULMOGATE_SERIES_QUIET_SECONDS": "8",
        "PULMOGATE_DELIVERY_BACKOFF_INITIAL_S": "2",
        "PULMOGATE_DELIVERY_BACKOFF_MAX_S": "4",
        "PULMOGATE_DELIVERY_MAX_ATTEMPTS": "30",
        "PULMOGATE_MIN_SLICES": "16",
    }
    with run_gateway(tmp, [["up"]], extra_env=env) as gw:
        port = free_port()
        add_route(gw, port, dest_aet="VIEWER", source_ae_title="CT_FIND")
        yield gw, port, tmp


def test_an_operator_sees_a_patients_series_arrive_finds_its_job_and_watches_it_finish(
    gateway: tuple[Gateway, int, Path], series: Path, artifacts: Path
) -> None:
    gw, viewer_port, tmp = gateway
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1500, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        expect = playwright_sync.expect
        loads: list[str] = []
        page.on("load", lambda: loads.append(page.url))

        def shot(name: str) -> None:
            page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)

        page.goto(f"{gw.api}/jobs")
        sign_in(page)

        sent: list[subprocess.CompletedProcess[str]] = []
        sender = threading.Thread(
            target=lambda: sent.append(storescu(gw.dicom_port, series, calling="CT_FIND"))
        )
        sender.start()
        # Nothing was in progress, so the operator reloads once the modality sends; from
        # then on the page reloads itself (refresh.js) and the test only waits.
        for _ in range(80):
            if page.locator("table.arrivals tr[data-status]").count():
                break
            page.wait_for_timeout(250)
            page.reload()
        expect(page.locator("body")).to_have_attribute("data-refresh", "5")
        arrival = page.locator("table.arrivals tbody tr").first
        expect(arrival).to_contain_text("MÜLLER JÖRG")
        expect(arrival).to_contain_text(PATIENT_ID)
        expect(arrival.locator(".instances")).to_have_text(re.compile(r"^\d+$"))
        shot("01-arriving")
        sender.join(timeout=120)
        assert sent and sent[0].returncode == 0, sent

        reloads_before = len(loads)
        row = page.locator("table.results tbody tr").first
        expect(row).to_have_attribute("data-status", "delivering", timeout=90_000)
        assert len(loads) > reloads_before  # the page reloaded itself to show the job
        expect(page.locator("table.arrivals")).to_have_count(0)
        expect(row).to_contain_text("MÜLLER JÖRG")
        expect(row.locator(".patient-id")).to_have_text(PATIENT_ID)
        expect(row.locator(".accession")).to_have_text(ACCESSION)
        expect(row.locator(".study-date")).to_have_text("2026-03-05")
        expect(row.locator(".received time")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:"))
        shot("02-job-delivering")

        page.fill("input[name=q]", "muller")
        page.click("form.filters button[type=submit]")
        expect(page).to_have_url(re.compile(r"q=muller"))
        expect(page.locator("table.results tbody tr")).to_have_count(1)
        page.fill("input[name=q]", "nobody-like-this")
        page.click("form.filters button[type=submit]")
        expect(page.locator("table.results")).to_have_count(0)
        page.goto(f"{gw.api}/jobs?q={ACCESSION}")
        page.locator("table.results tbody tr a").first.click()
        expect(page.locator("h1 .status")).to_have_text("delivering")
        expect(page.locator("body")).to_have_attribute("data-refresh", "5")
        expect(page.locator(".patient-name")).to_have_text("MÜLLER JÖRG")
        shot("03-job-page-delivering")

        (tmp / "viewer").mkdir()
        destination = subprocess.Popen(
            ["/usr/bin/storescp", "-aet", "VIEWER", "-od", str(tmp / "viewer"), str(viewer_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # No reload by the test: the job page refreshes itself until the job is done.
            expect(page.locator("h1 .status")).to_have_text("done", timeout=90_000)
        finally:
            destination.terminate()
            destination.wait(timeout=10)
        expect(page.locator("body")).not_to_have_attribute("data-refresh", "5")
        expect(page.locator("#log")).to_contain_text("delivered")
        shot("04-job-page-done")
        context.close()
