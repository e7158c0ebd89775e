"""The web UI's pages and forms (server-rendered; every read and change goes through the API)."""

import asyncio
import io
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from pulmogate.api import auth
from pulmogate.api.errors import ApiError
from pulmogate.api.ui.backend import Answer, Backend
from pulmogate.api.ui.i18n import LANG_COOKIE, LANGUAGES, notice, translate
from pulmogate.common.db.models import JobStatus, OutputObject
from pulmogate.common.runtime import Context

HERE = Path(__file__).parent
PAGE_SIZE = 25
PREVIEW_PX = 384
PREVIEW_OVERLAYS = 4

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")


def static_files() -> StaticFiles:
    """CSS and JavaScript of the UI."""
    return StaticFiles(directory=HERE / "static")


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def language(request: Request) -> str:
    """The browser's chosen language, else the ``language`` setting."""
    chosen = request.cookies.get(LANG_COOKIE, "")
    return chosen if chosen in LANGUAGES else _ctx(request).settings.language


def say(request: Request, key: str, **values: object) -> str:
    """A confirmation notice in the browser's language."""
    return notice(key, language(request), **values)


def _local(path: str) -> str:
    """Only same-site paths as redirect targets (no open redirects)."""
    return path if path.startswith("/") and not path.startswith("//") else "/jobs"


def back(path: str, *, notice: str = "", error: str = "") -> RedirectResponse:
    """Redirect after a form (303), carrying one message for the next page."""
    query = urlencode({k: v for k, v in (("notice", notice), ("error", error)) if v})
    return RedirectResponse(f"{path}?{query}" if query else path, status_code=303)


class SignInFirst(Exception):
    """Raised by ``whoami`` for a browser without a valid session."""


async def whoami(request: Request) -> dict[str, Any]:
    """The signed-in user (``/auth/me``), or ``SignInFirst``."""
    async with Backend(request) as api:
        me = await api.get("/auth/me")
    if not me.ok or me.data.get("auth") != "session":
        raise SignInFirst
    data: dict[str, Any] = me.data
    return data


def render(request: Request, template: str, me: dict[str, Any] | None, **values: Any) -> Response:
    """A page with the navigation, messages and the words in the browser's language."""
    lang = language(request)
    return templates.TemplateResponse(
        request,
        template,
        {
            "me": me,
            "lang": lang,
            "t": lambda key: translate(key, lang),
            "notice": request.query_params.get("notice", ""),
            "error": request.query_params.get("error", ""),
            "path": request.url.path,
            **values,
        },
    )


async def _form(request: Request) -> tuple[dict[str, Any], str]:
    """The posted form's fields and its CSRF token."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if k != "csrf_token"}
    token = form.get("csrf_token")
    return fields, token if isinstance(token, str) else ""


def _outcome(answer: Answer, path: str, notice: str) -> RedirectResponse:
    return back(path, notice=notice) if answer.ok else back(path, error=answer.error)


# --- sign in / out, language --------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    """The sign-in form."""
    return render(request, "login.html", None, next=_local(request.query_params.get("next", "")))


@router.post("/login")
async def login(request: Request) -> Response:
    """Sign in with the session login; back to the form with the reason on failure."""
    form = await request.form()
    target = _local(str(form.get("next") or "/jobs"))
    try:
        signed_in = await auth.sign_in(
            _ctx(request), request, str(form.get("username", "")), str(form.get("password", ""))
        )
    except ApiError as exc:
        return render(request, "login.html", None, next=target, login_error=exc.message)
    response = RedirectResponse(target, status_code=303)
    auth.set_session_cookies(response, _ctx(request), signed_in.secret, signed_in.csrf_token)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (CSRF-checked by the API)."""
    _, token = await _form(request)
    async with Backend(request, token) as api:
        await api.call("POST", "/auth/logout")
    response = RedirectResponse("/login", status_code=303)
    auth.clear_session_cookies(response)
    return response


@router.get("/lang/{code}")
async def switch_language(code: str, request: Request) -> Response:
    """Remember the browser's language and go back."""
    response = RedirectResponse(_local(request.query_params.get("next", "/jobs")), status_code=303)
    if code in LANGUAGES:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="lax")
    return response


@router.get("/")
async def home() -> Response:
    """The results table is the start page."""
    return RedirectResponse("/jobs", status_code=303)


# --- results ------------------------------------------------------------------------------


@router.get("/jobs")
async def jobs_page(request: Request) -> Response:
    """The results table: filters by status, pages of ``PAGE_SIZE``."""
    me = await whoami(request)
    status = request.query_params.get("status", "")
    text = request.query_params.get("q", "")[:100]
    try:
        page = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        page = 1
    params: dict[str, Any] = {"limit": PAGE_SIZE, "offset": (page - 1) * PAGE_SIZE}
    if status:
        params["status"] = status
    if text:
        params["q"] = text
    async with Backend(request) as api:
        listing = await api.get("/jobs", params=params)
    data: dict[str, Any] = listing.data if listing.ok else {"items": [], "total": 0}
    total = int(data["total"])
    pages = max(1, -(-total // PAGE_SIZE))
    return render(
        request,
        "jobs.html",
        me,
        jobs=data["items"],
        total=data["total"],
        page=page,
        pages=pages,
        status=status,
        q=text,
        statuses=[s.value for s in JobStatus],
        load_error=listing.error,
    )


@router.get("/jobs/{job_id}")
async def job_page(job_id: int, request: Request) -> Response:
    """One job: figures, log, stage timings, deliveries, key images."""
    me = await whoami(request)
    async with Backend(request) as api:
        job = await api.get(f"/jobs/{job_id}")
        log = await api.get(f"/jobs/{job_id}/log")
    if not job.ok:
        return back("/jobs", error=job.error)
    previews = await _preview_ids(request, job_id)
    return render(request, "job.html", me, job=job.data, log=log.data or [], previews=previews)


async def _preview_ids(request: Request, job_id: int) -> list[int]:
    """The output rows shown as key images: the summary page and a few overlay slices."""
    async with _ctx(request).db.sessions() as session:
        rows = (
            await session.execute(
                select(OutputObject.id, OutputObject.kind)
                .where(OutputObject.job_id == job_id)
                .where(OutputObject.kind.in_(["summary", "overlay"]))
                .order_by(OutputObject.id)
            )
        ).all()
    summary = [i for i, kind in rows if kind == "summary"]
    overlay = [i for i, kind in rows if kind == "overlay"]
    if len(overlay) > PREVIEW_OVERLAYS:
        # Evenly spaced through the middle of the lungs, where lesions show best.
        step = len(overlay) / (PREVIEW_OVERLAYS + 1)
        overlay = [overlay[int(step * (k + 1))] for k in range(PREVIEW_OVERLAYS)]
    return summary[:1] + overlay


def _png(path: Path) -> bytes:
    """A downsized PNG of a DICOM image (RGB secondary captures, or grey)."""
    import numpy as np
    from PIL import Image
    from pydicom import dcmread

    ds = dcmread(path)
    pixels = ds.pixel_array
    if pixels.ndim == 3 and pixels.shape[-1] != 3:
        pixels = pixels[pixels.shape[0] // 2]
    if pixels.ndim == 2:
        lo, hi = float(pixels.min()), float(pixels.max())
        pixels = ((pixels - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)
    image = Image.fromarray(pixels.astype(np.uint8))
    image.thumbnail((PREVIEW_PX, PREVIEW_PX))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@router.get("/jobs/{job_id}/preview/{output_id}.png")
async def preview(job_id: int, output_id: int, request: Request) -> Response:
    """A key image of the job as PNG (any signed-in user who may read jobs)."""
    await whoami(request)
    async with Backend(request) as api:
        allowed = await api.get(f"/jobs/{job_id}")
    if not allowed.ok:
        return Response(allowed.error, status_code=allowed.status, media_type="text/plain")
    async with _ctx(request).db.sessions() as session:
        path = await session.scalar(
            select(OutputObject.path).where(
                OutputObject.id == output_id, OutputObject.job_id == job_id
            )
        )
    try:
        data = await asyncio.to_thread(_png, Path(path)) if path is not None else None
    except FileNotFoundError:
        data = None
    if data is None:
        return Response("no such image", status_code=404, media_type="text/plain")
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.post("/jobs/{job_id}/resend")
async def resend(job_id: int, request: Request) -> Response:
    """Resend the job's results to its destinations."""
    _, token = await _form(request)
    async with Backend(request, token) as api:
        answer = await api.call("POST", f"/jobs/{job_id}/resend")
    names = ", ".join(answer.data.get("destinations", [])) if answer.ok else ""
    return _outcome(answer, f"/jobs/{job_id}", say(request, "resend_requested", names=names))


@router.post("/jobs/{job_id}/delete")
async def delete_job(job_id: int, request: Request) -> Response:
    """Delete the job with its files."""
    _, token = await _form(request)
    async with Backend(request, token) as api:
        answer = await api.call("DELETE", f"/jobs/{job_id}")
    if answer.ok:
        return back("/jobs", notice=say(request, "job_deleted", id=job_id))
    return back(f"/jobs/{job_id}", error=answer.error)


# --- new task -----------------------------------------------------------------------------


@router.get("/upload")
async def upload_page(request: Request) -> Response:
    """Upload a zip or DICOM files (the page script posts to /api/v1/uploads with progress)."""
    me = await whoami(request)
    async with Backend(request) as api:
        rules = await api.get("/rules")
    return render(request, "upload.html", me, rules=rules.data if rules.ok else [])


# --- rules and the tester -----------------------------------------------------------------


def _rule_body(fields: dict[str, Any]) -> dict[str, Any]:
    ids = [int(x) for x in str(fields.get("destination_ids", "")).split(",") if x.strip()]
    body: dict[str, Any] = {
        "name": fields.get("name", ""),
        "enabled": fields.get("enabled") == "on",
        "source_ip": fields.get("source_ip") or None,
        "source_ae_title": fields.get("source_ae_title") or None,
        "study_description_filter": fields.get("study_description_filter") or ".*",
        "series_description_filter": fields.get("series_description_filter") or ".*",
        "destination_ids": ids,
    }
    for key in ("priority", "ttl_days"):
        if str(fields.get(key, "")).strip():
            body[key] = fields[key]
    return body


async def _rules_page(request: Request, me: dict[str, Any], **extra: Any) -> Response:
    async with Backend(request) as api:
        rules = await api.get("/rules")
        destinations = await api.get("/destinations")
    return render(
        request,
        "rules.html",
        me,
        rules=rules.data if rules.ok else [],
        destinations=destinations.data if destinations.ok else [],
        load_error=rules.error,
        **extra,
    )


@router.get("/rules")
async def rules_page(request: Request) -> Response:
    """Rules in matching order, a form to add one, and the tester."""
    return await _rules_page(request, await whoami(request))


@router.post("/rules")
async def create_rule(request: Request) -> Response:
    """Add a rule from the form."""
    fields, token = await _form(request)
    form = await request.form()
    fields["destination_ids"] = ",".join(str(v) for v in form.getlist("destination_ids"))
    async with Backend(request, token) as api:
        answer = await api.call("POST", "/rules", json=_rule_body(fields))
    return _outcome(answer, "/rules", say(request, "rule_added", name=fields.get("name", "")))


@router.post("/rules/test")
async def test_rules(request: Request) -> Response:
    """Run the rule tester and show its verdicts on the rules page."""
    me = await whoami(request)
    fields, token = await _form(request)
    sample = {
        k: str(fields.get(k, ""))
        for k in ("source_ip", "calling_ae", "study_description", "series_description")
    }
    async with Backend(request, token) as api:
        answer = await api.call("POST", "/rules/test", json=sample)
    return await _rules_page(
        request,
        me,
        sample=sample,
        test_result=answer.data if answer.ok else None,
        test_error=answer.error,
    )


@router.get("/rules/{rule_id}")
async def rule_edit_page(rule_id: int, request: Request) -> Response:
    """A rule's form, filled in, to change it."""
    me = await whoami(request)
    async with Backend(request) as api:
        rule = await api.get(f"/rules/{rule_id}")
        destinations = await api.get("/destinations")
    if not rule.ok:
        return back("/rules", error=rule.error)
    return render(
        request,
        "rule_edit.html",
        me,
        rule=rule.data,
        destinations=destinations.data if destinations.ok else [],
    )


@router.post("/rules/{rule_id}")
async def update_rule(rule_id: int, request: Request) -> Response:
    """Save the edited rule (every field of the form)."""
    fields, token = await _form(request)
    form = await request.form()
    fields["destination_ids"] = ",".join(str(v) for v in form.getlist("destination_ids"))
    async with Backend(request, token) as api:
        answer = await api.call("PATCH", f"/rules/{rule_id}", json=_rule_body(fields))
    if not answer.ok:
        return back(f"/rules/{rule_id}", error=answer.error)
    return back("/rules", notice=say(request, "rule_saved", name=fields.get("name", "")))


@router.post("/rules/{rule_id}/toggle")
async def toggle_rule(rule_id: int, request: Request) -> Response:
    """Enable or disable a rule."""
    fields, token = await _form(request)
    enabled = fields.get("enabled") == "true"
    async with Backend(request, token) as api:
        answer = await api.call("PATCH", f"/rules/{rule_id}", json={"enabled": enabled})
    return _outcome(
        answer, "/rules", say(request, "rule_enabled" if enabled else "rule_disabled", id=rule_id)
    )


@router.post("/rules/{rule_id}/delete")
async def delete_rule(rule_id: int, request: Request) -> Response:
    """Remove a rule."""
    _, token = await _form(request)
    async with Backend(request, token) as api:
        answer = await api.call("DELETE", f"/rules/{rule_id}")
    return _outcome(answer, "/rules", say(request, "rule_deleted", id=rule_id))


# --- destinations -------------------------------------------------------------------------


@router.get("/destinations")
async def destinations_page(request: Request) -> Response:
    """Destinations with a C-ECHO button each."""
    me = await whoami(request)
    async with Backend(request) as api:
        destinations = await api.get("/destinations")
    return render(
        request,
        "destinations.html",
        me,
        destinations=destinations.data if destinations.ok else [],
        load_error=destinations.error,
    )


@router.post("/destinations")
async def create_destination(request: Request) -> Response:
    """Add a destination from the form."""
    fields, token = await _form(request)
    body = {k: fields.get(k, "") for k in ("name", "host", "port", "ae_title")}
    async with Backend(request, token) as api:
        answer = await api.call("POST", "/destinations", json=body)
    return _outcome(answer, "/destinations", say(request, "destination_added", name=body["name"]))


@router.get("/destinations/{destination_id}")
async def destination_edit_page(destination_id: int, request: Request) -> Response:
    """A destination's form, filled in, to change it."""
    me = await whoami(request)
    async with Backend(request) as api:
        destination = await api.get(f"/destinations/{destination_id}")
    if not destination.ok:
        return back("/destinations", error=destination.error)
    return render(request, "destination_edit.html", me, destination=destination.data)


@router.post("/destinations/{destination_id}")
async def update_destination(destination_id: int, request: Request) -> Response:
    """Save the edited destination."""
    fields, token = await _form(request)
    body: dict[str, Any] = {k: fields.get(k, "") for k in ("name", "host", "port", "ae_title")}
    body["enabled"] = fields.get("enabled") == "on"
    async with Backend(request, token) as api:
        answer = await api.call("PATCH", f"/destinations/{destination_id}", json=body)
    if not answer.ok:
        return back(f"/destinations/{destination_id}", error=answer.error)
    return back("/destinations", notice=say(request, "destination_saved", name=body["name"]))


@router.post("/destinations/{destination_id}/delete")
async def delete_destination(destination_id: int, request: Request) -> Response:
    """Remove a destination (the API refuses one still in use)."""
    _, token = await _form(request)
    async with Backend(request, token) as api:
        answer = await api.call("DELETE", f"/destinations/{destination_id}")
    return _outcome(answer, "/destinations", say(request, "destination_deleted", id=destination_id))


@router.post("/destinations/{destination_id}/echo")
async def echo_destination(destination_id: int, request: Request) -> Response:
    """C-ECHO the destination and show the outcome."""
    _, token = await _form(request)
    async with Backend(request, token) as api:
        answer = await api.call("POST", f"/destinations/{destination_id}/echo")
    if not answer.ok:
        return back("/destinations", error=answer.error)
    message = f"{answer.data['message']} ({answer.data['elapsed_ms']:.0f} ms)"
    if answer.data["ok"]:
        return back("/destinations", notice=message)
    return back("/destinations", error=message)


# --- license, users, tokens ---------------------------------------------------------------


@router.get("/license")
async def license_page(request: Request) -> Response:
    """The license status and a form to install a key."""
    me = await whoami(request)
    async with Backend(request) as api:
        status = await api.get("/license")
    return render(
        request,
        "license.html",
        me,
        license=status.data if status.ok else None,
        load_error=status.error,
    )


@router.post("/license")
async def install_license(request: Request) -> Response:
    """Install a license key."""
    fields, token = await _form(request)
    async with Backend(request, token) as api:
        answer = await api.call(
            "POST", "/license", json={"key": str(fields.get("key", "")).strip()}
        )
    return _outcome(answer, "/license", say(request, "license_installed"))


@router.get("/users")
async def users_page(request: Request) -> Response:
    """Users and their roles (admins only, as the API decides)."""
    me = await whoami(request)
    async with Backend(request) as api:
        users = await api.get("/users")
    return render(
        request, "users.html", me, users=users.data if users.ok else [], load_error=users.error
    )


@router.post("/users")
async def create_user(request: Request) -> Response:
    """Add a user."""
    fields, token = await _form(request)
    body = {k: str(fields.get(k, "")) for k in ("username", "password", "role")}
    async with Backend(request, token) as api:
        answer = await api.call("POST", "/users", json=body)
    return _outcome(answer, "/users", say(request, "user_added", name=body["username"]))


@router.post("/users/{user_id}/active")
async def set_user_active(user_id: int, request: Request) -> Response:
    """Activate or deactivate a user."""
    fields, token = await _form(request)
    active = fields.get("active") == "true"
    async with Backend(request, token) as api:
        answer = await api.call("PATCH", f"/users/{user_id}", json={"active": active})
    return _outcome(
        answer,
        "/users",
        say(request, "user_activated" if active else "user_deactivated", id=user_id),
    )


@router.post("/users/{user_id}/role")
async def set_user_role(user_id: int, request: Request) -> Response:
    """Give a user another role."""
    fields, token = await _form(request)
    role = str(fields.get("role", ""))
    async with Backend(request, token) as api:
        answer = await api.call("PATCH", f"/users/{user_id}", json={"role": role})
    return _outcome(answer, "/users", say(request, "user_role", id=user_id, role=role))


@router.get("/tokens")
async def tokens_page(request: Request) -> Response:
    """The caller's API tokens."""
    me = await whoami(request)
    async with Backend(request) as api:
        tokens = await api.get("/tokens")
    return render(
        request,
        "tokens.html",
        me,
        tokens=tokens.data if tokens.ok else [],
        load_error=tokens.error,
    )


@router.post("/tokens")
async def create_token(request: Request) -> Response:
    """Create a token and show its secret once."""
    me = await whoami(request)
    fields, token = await _form(request)
    body: dict[str, Any] = {"name": str(fields.get("name", ""))}
    if str(fields.get("expires_in_days", "")).strip():
        body["expires_in_days"] = fields["expires_in_days"]
    async with Backend(request, token) as api:
        answer = await api.call("POST", "/tokens", json=body)
        tokens = await api.get("/tokens")
    return render(
        request,
        "tokens.html",
        me,
        tokens=tokens.data if tokens.ok else [],
        created=answer.data if answer.ok else None,
        load_error=answer.error,
    )


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(token_id: int, request: Request) -> Response:
    """Revoke a token."""
    _, token = await _form(request)
    async with Backend(request, token) as api:
        answer = await api.call("DELETE", f"/tokens/{token_id}")
    return _outcome(answer, "/tokens", say(request, "token_revoked", id=token_id))


# --- status -------------------------------------------------------------------------------


@router.get("/status")
async def status_page(request: Request) -> Response:
    """Services, queues, disk and the receiver's policy."""
    me = await whoami(request)
    async with Backend(request) as api:
        status = await api.get("/status")
    return render(
        request,
        "status.html",
        me,
        status=status.data if status.ok else None,
        load_error=status.error,
    )


def sign_in_redirect(request: Request, _exc: Exception) -> Response:
    """Pages without a session go to the sign-in form (and come back after)."""
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
    return RedirectResponse("/login", status_code=303)
