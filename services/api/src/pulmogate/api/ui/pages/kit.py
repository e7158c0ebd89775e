"""What every UI page uses: templates, the language, sign-in, forms and redirects."""

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from pulmogate.api.ui import flash
from pulmogate.api.ui.backend import Answer, Backend
from pulmogate.api.ui.i18n import LANG_COOKIE, LANGUAGES, notice, translate
from pulmogate.common.runtime import Context

HERE = Path(__file__).parent.parent

templates = Jinja2Templates(directory=HERE / "templates")


def static_files() -> StaticFiles:
    """CSS and JavaScript of the UI."""
    return StaticFiles(directory=HERE / "static")


def app_context(request: Request) -> Context:
    """The running services' context (settings, database, bus)."""
    ctx: Context = request.app.state.ctx
    return ctx


def language(request: Request) -> str:
    """The browser's chosen language, else the ``language`` setting."""
    chosen = request.cookies.get(LANG_COOKIE, "")
    return chosen if chosen in LANGUAGES else app_context(request).settings.language


def say(request: Request, key: str, **values: object) -> str:
    """A confirmation notice in the browser's language."""
    return notice(key, language(request), **values)


def local_path(path: str) -> str:
    """Only same-site paths as redirect targets (no open redirects)."""
    return path if path.startswith("/") and not path.startswith("//") else "/jobs"


def back(path: str, *, notice: str = "", error: str = "") -> RedirectResponse:
    """Redirect after a form (303); its message rides in a flash cookie, never in the URL,
    so no link can make a page show text of someone else's choosing."""
    response = RedirectResponse(path, status_code=303)
    if notice or error:
        flash.put(response, notice=notice, error=error)
    return response


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
    message = flash.take(request)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "me": me,
            "lang": lang,
            "t": lambda key: translate(key, lang),
            "notice": message.notice,
            "error": message.error,
            "path": request.url.path,
            **values,
        },
    )
    if message:
        flash.clear(response)
    return response


async def form_fields(request: Request) -> tuple[dict[str, Any], str]:
    """The posted form's fields and its CSRF token."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if k != "csrf_token"}
    token = form.get("csrf_token")
    return fields, token if isinstance(token, str) else ""


def outcome(answer: Answer, path: str, notice: str) -> RedirectResponse:
    return back(path, notice=notice) if answer.ok else back(path, error=answer.error)


def sign_in_redirect(request: Request, _exc: Exception) -> Response:
    """Pages without a session go to the sign-in form (and come back after)."""
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
    return RedirectResponse("/login", status_code=303)
