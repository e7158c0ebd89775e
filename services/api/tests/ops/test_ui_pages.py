"""The web UI over HTTP: sign-in, every page, forms with CSRF, language switch, escaping."""

import re

import httpx
import pytest
from sqlalchemy import select

from pulmogate.common.db.accounts import Role
from pulmogate.common.db.models import Job, JobLog, JobStatus, RoutingRule, Series
from pulmogate.common.runtime import Context
from services.api.tests.conftest import add_user
from services.api.tests.rows import T0, MakeJob

XSS = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'
PAGES = [
    "/jobs",
    "/jobs?q=chest&status=done&page=2",
    "/upload",
    "/rules",
    "/destinations",
    "/license",
    "/users",
    "/tokens",
    "/status",
]


async def form_login(
    client: httpx.AsyncClient, username: str, password: str, **extra: str
) -> httpx.Response:
    """Sign in through the login form as a browser does: load it, then post it."""
    form = await client.get("/login")
    match = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert match, "no login CSRF field on the sign-in form"
    data = {"username": username, "password": password, "login_csrf": match.group(1), **extra}
    return await client.post("/login", data=data)


@pytest.fixture
async def browser(anonymous: httpx.AsyncClient, ctx: Context) -> httpx.AsyncClient:
    """A cookie-keeping client signed in through the login form as an admin."""
    await add_user(ctx, "ui-admin", Role.ADMIN, password="ui admin password")
    response = await form_login(anonymous, "ui-admin", "ui admin password", next="/rules")
    assert response.status_code == 303 and response.headers["location"] == "/rules"
    return anonymous


async def shown(client: httpx.AsyncClient, redirect: httpx.Response) -> str:
    """The page a form's redirect leads to, as the browser then shows it."""
    assert redirect.status_code == 303, redirect.text
    return (await client.get(redirect.headers["location"])).text


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def test_pages_send_a_browser_without_session_to_sign_in_and_back(
    anonymous: httpx.AsyncClient,
) -> None:
    response = await anonymous.get("/jobs?status=done")

    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fjobs%3Fstatus%3Ddone"
    assert (await anonymous.get("/login")).status_code == 200


async def test_a_wrong_password_shows_the_reason_on_the_form(
    anonymous: httpx.AsyncClient, ctx: Context
) -> None:
    await add_user(ctx, "someone", Role.VIEWER, password="right password")

    response = await form_login(anonymous, "someone", "wrong")

    assert response.status_code == 200
    assert "wrong username or password" in response.text


async def test_every_page_renders_for_an_admin(browser: httpx.AsyncClient) -> None:
    for page in PAGES:
        response = await browser.get(page)
        assert response.status_code == 200, (page, response.text[:500])
        assert "PulmoGate" in response.text


async def test_dicom_header_text_is_escaped_on_the_results_and_job_pages(
    browser: httpx.AsyncClient, ctx: Context, make_job: MakeJob
) -> None:
    job_id = await make_job(prediction=XSS, logs=[("info", "router", XSS)])
    async with ctx.db.session() as session:
        series = await session.scalar(select(Series).join(Job).where(Job.id == job_id))
        assert series is not None
        series.series_description = series.study_description = series.calling_ae = XSS[:16]
        series.series_description = XSS

    listing = (await browser.get("/jobs")).text
    detail = (await browser.get(f"/jobs/{job_id}")).text

    for html in (listing, detail):
        assert "<script>" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in html


async def test_results_show_patient_and_arrivals_and_reload_while_work_is_in_progress(
    browser: httpx.AsyncClient, ctx: Context, make_job: MakeJob
) -> None:
    """Received time, patient, ID, accession and study date on the list and the job page;
    a series still arriving is listed with its images so far; pages with work in progress
    carry data-refresh (static/refresh.js reloads them), finished ones do not."""
    done = await make_job(status="done")
    async with ctx.db.session() as session:
        series = await session.scalar(select(Series).join(Job).where(Job.id == done))
        assert series is not None
        series.patient_name, series.patient_id = "MÜLLER^JÖRG", "HOSP-0042"
        series.accession_number, series.study_date = "ACC-77812", "20260305"
    finished = (await browser.get("/jobs")).text
    assert "MÜLLER JÖRG" in finished and "HOSP-0042" in finished and "ACC-77812" in finished
    assert "2026-03-05" in finished and "2026-03-01 07:59:50" in finished
    assert "data-refresh" not in finished
    job_page = (await browser.get(f"/jobs/{done}")).text
    assert "MÜLLER JÖRG" in job_page and "ACC-77812" in job_page
    assert "data-refresh" not in job_page and "/static/refresh.js" in job_page

    running = await make_job(status="analysing")
    assert 'data-refresh="5"' in (await browser.get(f"/jobs/{running}")).text
    assert 'data-refresh="5"' in (await browser.get("/jobs")).text
    async with ctx.db.session() as session:
        job = await session.get(Job, running)
        assert job is not None
        job.status = JobStatus.DONE
        session.add(
            Series(
                series_uid="1.2.826.0.1.98.1",
                study_uid="1.2.826.0.1.98",
                status="receiving",
                instance_count=12,
                calling_ae="PACS",
            )
        )
    arriving = (await browser.get("/jobs")).text
    assert 'data-refresh="5"' in arriving
    assert "data-series-id=" in arriving and '<span class="instances">12</span>' in arriving
    assert (await browser.get("/static/refresh.js")).status_code == 200
    filtered = await browser.get("/jobs?q=muller&received_from=2026-03-01&page=1")
    assert filtered.status_code == 200 and "HOSP-0042" in filtered.text


async def test_a_rule_is_created_and_tested_through_the_forms_with_csrf(
    browser: httpx.AsyncClient, ctx: Context
) -> None:
    token = _csrf((await browser.get("/rules")).text)

    created = await browser.post(
        "/rules",
        data={
            "csrf_token": token,
            "name": "ward ct",
            "source_ip": "10.1.0.0/16",
            "source_ae_title": "CT1",
            "enabled": "on",
        },
    )
    created_page = await shown(browser, created)
    forged = await browser.post("/rules", data={"name": "forged"})
    forged_page = await shown(browser, forged)
    tested = await browser.post(
        "/rules/test",
        data={"csrf_token": token, "source_ip": "10.1.2.3", "calling_ae": "CT1"},
    )

    assert created.headers["location"] == "/rules"
    assert "rule ward ct added" in created_page
    assert "CSRF token missing or wrong" in forged_page
    async with ctx.db.session() as session:
        names = list(await session.scalars(select(RoutingRule.name)))
    assert names == ["ward ct"]
    assert "rule &#39;ward ct&#39; (priority 100) matches" in tested.text


async def test_the_language_switch_translates_the_pages(browser: httpx.AsyncClient) -> None:
    switched = await browser.get("/lang/ru", params={"next": "/status"})
    page = await browser.get("/status")
    outside = await browser.get("/lang/en", params={"next": "https://evil.example/"})

    assert switched.status_code == 303 and switched.headers["location"] == "/status"
    assert "Состояние" in page.text and "Результаты" in page.text
    assert outside.headers["location"] == "/jobs"


async def test_a_viewer_sees_results_but_the_users_page_shows_the_refusal(
    anonymous: httpx.AsyncClient, ctx: Context
) -> None:
    await add_user(ctx, "ui-viewer", Role.VIEWER, password="viewer password")
    await form_login(anonymous, "ui-viewer", "viewer password")

    results = await anonymous.get("/jobs")
    users = await anonymous.get("/users")

    assert results.status_code == 200
    assert users.status_code == 200 and "may not do this" in users.text


async def test_the_status_page_says_why_images_are_refused_above_the_watermark(
    browser: httpx.AsyncClient, ctx: Context
) -> None:
    ctx.settings.disk_max_used_percent = 0.0  # any real volume is fuller than 0 %

    page = await browser.get("/status")

    assert 'id="disk-alert"' in page.text
    assert "Not accepting new images" in page.text and "0xA700" in page.text


async def test_a_purged_job_shows_why_its_results_are_gone(
    browser: httpx.AsyncClient, make_job: MakeJob
) -> None:
    job_id = await make_job(status="done", purged_at=T0)

    listing = await browser.get("/jobs")
    detail = await browser.get(f"/jobs/{job_id}")
    api = await browser.get(f"/api/v1/jobs/{job_id}")

    assert "Files purged by retention" in listing.text and "results.zip" not in listing.text
    assert "Files purged by retention: 2026-03-01 08:00" in detail.text
    assert api.json()["purged_at"].startswith("2026-03-01T08:00")


async def test_rules_destinations_and_roles_are_edited_through_their_forms(
    browser: httpx.AsyncClient, ctx: Context
) -> None:
    token = _csrf((await browser.get("/rules")).text)
    await browser.post(
        "/destinations",
        data={
            "csrf_token": token,
            "name": "pacs",
            "host": "10.0.0.9",
            "port": "104",
            "ae_title": "PACS",
            "image_encoding": "rle",
        },
    )
    dest_id = (await browser.get("/api/v1/destinations")).json()[0]["id"]
    dest_form = await browser.get(f"/destinations/{dest_id}")
    await browser.post("/rules", data={"csrf_token": token, "name": "r1", "enabled": "on"})
    rule_id = (await browser.get("/api/v1/rules")).json()[0]["id"]
    viewer = await add_user(ctx, "promoted", Role.VIEWER)

    form = await browser.get(f"/rules/{rule_id}")
    saved = await browser.post(
        f"/rules/{rule_id}",
        data={
            "csrf_token": token,
            "name": "r1 renamed",
            "priority": "5",
            "ttl_days": "7",
            "source_ip": "10.0.0.0/8",
            "destination_ids": str(dest_id),
        },
    )
    saved_page = await shown(browser, saved)
    bad = await browser.post(
        f"/rules/{rule_id}",
        data={"csrf_token": token, "name": "r1", "study_description_filter": "(unclosed"},
    )
    bad_page = await shown(browser, bad)
    dest_saved = await browser.post(
        f"/destinations/{dest_id}",
        data={
            "csrf_token": token,
            "name": "pacs",
            "host": "10.0.0.10",
            "port": "11112",
            "ae_title": "PACS2",
        },
    )
    dest_page = await shown(browser, dest_saved)
    role = await browser.post(
        f"/users/{viewer.id}/role", data={"csrf_token": token, "role": "operator"}
    )
    role_page = await shown(browser, role)

    assert form.status_code == 200 and 'value="r1"' in form.text
    assert "r1 renamed" in saved_page
    assert "invalid regular expression" in bad_page
    rule = (await browser.get(f"/api/v1/rules/{rule_id}")).json()
    assert (rule["name"], rule["priority"], rule["ttl_days"], rule["enabled"]) == (
        "r1 renamed",
        5,
        7,
        False,
    )
    assert rule["source_ip"] == "10.0.0.0/8" and rule["destination_ids"] == [dest_id]
    destination = (await browser.get(f"/api/v1/destinations/{dest_id}")).json()
    assert (destination["port"], destination["ae_title"], destination["enabled"]) == (
        11112,
        "PACS2",
        False,
    )
    # Added as rle; the edit form sent no encoding, so it stayed.
    assert '<option value="rle" selected>' in dest_form.text
    assert destination["image_encoding"] == "rle"
    assert 'class="notice"' in role_page and 'class="notice"' in dest_page
    users = {u["username"]: u["role"] for u in (await browser.get("/api/v1/users")).json()}
    assert users["promoted"] == "operator"


async def test_form_confirmations_follow_the_chosen_language(browser: httpx.AsyncClient) -> None:
    await browser.get("/lang/ru", params={"next": "/rules"})
    token = _csrf((await browser.get("/rules")).text)
    created = await browser.post(
        "/rules", data={"csrf_token": token, "name": "отделение", "enabled": "on"}
    )
    page = await shown(browser, created)

    assert "правило отделение добавлено" in page


async def test_a_job_is_analysed_again_from_its_page(
    browser: httpx.AsyncClient, ctx: Context, make_job: MakeJob
) -> None:
    job_id = await make_job(status="rejected", reason="2 slices, at least 16 are needed")
    busy = await make_job(status="queued")
    page = (await browser.get(f"/jobs/{job_id}")).text
    assert f'action="/jobs/{job_id}/reanalyse"' in page
    assert f'action="/jobs/{busy}/reanalyse"' not in (await browser.get(f"/jobs/{busy}")).text

    asked = await browser.post(f"/jobs/{job_id}/reanalyse", data={"csrf_token": _csrf(page)})
    assert "analysis requested again (120 instances)" in await shown(browser, asked)
    refused = await browser.post(f"/jobs/{busy}/reanalyse", data={"csrf_token": _csrf(page)})
    assert f"job {busy} is queued for analysis" in await shown(browser, refused)
    async with ctx.db.session() as session:
        lines = list(await session.scalars(select(JobLog.message).where(JobLog.job_id == job_id)))
    assert lines == ["re-analysis requested by ui-admin (120 instances)"]
