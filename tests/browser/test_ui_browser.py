"""The web UI in a real browser (Debian's Chromium driven by Playwright) against `pulmogate up`.

An operator signs in, adds a rule, uploads a small phantom study, watches its job finish,
reads its log, downloads its results and deletes it. Screenshots of each step are saved in
``$PULMOGATE_ARTIFACTS`` (default: the test's temporary folder) for CI to keep.
"""

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulmogate.tools.phantom import make_phantom, write_series
from tests.fixtures.browser import BROWSER_MARKS, artifacts_folder, chromium, playwright_sync
from tests.fixtures.gateway import ADMIN_PASSWORD, ADMIN_USERNAME, Gateway, run_gateway, storescp

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go."""
    return artifacts_folder(tmp_path_factory, "browser")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, int]]:
    """The embedded gateway (SQLite, in-process bus) and a storescp destination."""
    tmp = tmp_path_factory.mktemp("browser-gateway")
    with (
        storescp(tmp, "VIEWER") as (port, _folder),
        run_gateway(tmp, [["up"]], extra_env={"PULMOGATE_MIN_SLICES": "16"}) as gw,
    ):
        with gw.client() as client:
            destination = {
                "name": "viewer",
                "host": "127.0.0.1",
                "port": port,
                "ae_title": "VIEWER",
            }
            created = client.post("/api/v1/destinations", json=destination)
            assert created.status_code == 201, created.text
        yield gw, port


@pytest.fixture(scope="module")
def phantom_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-slice 128x128 phantom series (2.7 mm pixels: enough lung to analyse), zipped."""
    folder = tmp_path_factory.mktemp("phantom")
    paths = write_series(
        make_phantom(
            slices=20, size=128, pixel_spacing_mm=2.7, slice_thickness_mm=2.5, involvement=0.3
        ),
        folder / "series",
        patient_name="PHANTOM^BROWSER",
        series_description="Browser <b>upload</b>",
        seed=21,
    )
    archive = folder / "phantom-study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in paths:
            out.write(path, f"study/{path.name}")
    return archive


def test_operator_uploads_a_study_and_follows_it_to_its_results(
    gateway: tuple[Gateway, int], phantom_zip: Path, artifacts: Path
) -> None:
    gw, _port = gateway
    with chromium() as browser:
        context = browser.new_context(
            accept_downloads=True, viewport={"width": 1400, "height": 900}
        )
        page = context.new_page()
        page.set_default_timeout(20_000)
        expect = playwright_sync.expect

        def shot(name: str) -> None:
            page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)

        page.goto(f"{gw.api}/jobs")
        expect(page).to_have_url(re.compile(r"/login\?next="))
        page.fill("input[name=username]", ADMIN_USERNAME)
        page.fill("input[name=password]", ADMIN_PASSWORD)
        shot("01-login")
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Results")

        page.click("text=Rules")
        form = page.locator("#rule-form")
        form.locator("input[name=name]").fill("browser uploads")
        form.locator("input[name=source_ae_title]").fill("CT_BROWSER")
        form.locator("label.check", has_text="viewer").locator("input").check()
        form.locator("button[type=submit]").click()
        expect(page.locator(".notice")).to_contain_text("rule browser uploads added")
        expect(page.locator("tr[data-rule='browser uploads']")).to_contain_text("viewer")
        shot("02-rule-created")

        page.click("text=New task")
        # Its script takes the form over (chunked, resumable); before that it would post plain.
        expect(page.locator("#upload-form[data-ready=true]")).to_have_count(1)
        page.set_input_files(
            "input[name=files]",
            files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image" * 40}],
        )
        page.click("#upload-form button[type=submit]")
        expect(page.locator("#upload-result[data-done=error]")).to_contain_text(
            "notes.txt: not a DICOM file"
        )
        page.set_input_files("input[name=files]", str(phantom_zip))
        page.select_option("select[name=rule_id]", label="browser uploads")
        page.click("#upload-form button[type=submit]")
        expect(page.locator("#upload-result[data-done=true]")).to_contain_text("20")
        shot("03-uploaded")

        page.click("text=Results")
        row = page.locator("table.results tbody tr").first
        for _ in range(120):
            status = row.get_attribute("data-status")
            if status in ("done", "failed", "rejected", "ignored"):
                break
            page.wait_for_timeout(1000)
            page.reload()
        assert row.get_attribute("data-status") == "done", gw.logs()[-3000:]
        expect(row.locator(".prediction")).to_contain_text("CT")
        expect(row).to_contain_text("delivered 1")
        expect(row).to_contain_text("Browser <b>upload</b>")
        shot("04-results-done")

        row.locator("a", has_text="Log").click()
        expect(page.locator("#log")).to_contain_text("rule 'browser uploads' matched")
        expect(page.locator(".previews img").first).to_be_visible()
        # Polled with evaluate_all: wait_for_function compiles its predicate with eval,
        # which the pages' Content-Security-Policy (script-src 'self') refuses.
        previews = page.locator(".previews img")
        for _ in range(100):
            if previews.evaluate_all("imgs => imgs.every(i => i.complete && i.naturalWidth > 0)"):
                break
            page.wait_for_timeout(200)
        else:
            raise AssertionError("the key images did not load")
        shot("05-job-log")

        with page.expect_download() as download_info:
            page.locator(".actions a", has_text="Download").click()
        download = download_info.value
        data = Path(download.path()).read_bytes()
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        assert any("/overlay/" in n for n in names) and any("/sr/" in n for n in names), names

        page.once("dialog", lambda dialog: dialog.accept())
        page.locator(".actions button.danger").click()
        expect(page.locator(".notice")).to_contain_text("deleted")
        expect(page.locator("table.results")).to_have_count(0)
        shot("06-deleted")

        page.click("header nav a[href='/status']")
        page.click("header a[href^='/lang/ru']")
        expect(page.locator("h1")).to_have_text("Состояние")
        expect(page.locator("#disk")).to_contain_text("limit 90 %")
        shot("07-status-ru")
        context.close()
