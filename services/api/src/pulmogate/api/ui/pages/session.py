"""Sign in and out, the language switch, the start page."""

import re

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from pulmogate.api import auth
from pulmogate.api.errors import ApiError
from pulmogate.api.ui.backend import Backend
from pulmogate.api.ui.i18n import LANG_COOKIE, LANGUAGES
from pulmogate.api.ui.pages.kit import app_context, form_fields, local_path, render, say
from pulmogate.common.credentials import new_secret, same_secret

router = APIRouter(include_in_schema=False)


LOGIN_CSRF_COOKIE = "pulmogate_login_csrf"
LOGIN_CSRF_FIELD = "login_csrf"
LOGIN_CSRF_MAX_AGE_S = 3600
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{32,64}")


def _login_form(
    request: Request, target: str, *, error: str = "", status_code: int = 200
) -> Response:
    """The form with the browser's login CSRF token (a new one if it has none), in its field
    and in a SameSite=Strict cookie: a form posted from another site arrives without the
    cookie and is refused. Tabs opened side by side share the token."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not TOKEN_SHAPE.fullmatch(token):
        token = new_secret()
    response = render(request, "login.html", None, next=target, login_error=error, login_csrf=token)
    response.status_code = status_code
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=LOGIN_CSRF_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        path="/login",
        secure=app_context(request).settings.cookie_secure,
    )
    return response


@router.get("/login")
async def login_page(request: Request) -> Response:
    """The sign-in form."""
    return _login_form(request, local_path(request.query_params.get("next", "")))


@router.post("/login")
async def login(request: Request) -> Response:
    """Sign in with the session login; back to the form with the reason on failure."""
    form = await request.form()
    target = local_path(str(form.get("next") or "/jobs"))
    sent = str(form.get(LOGIN_CSRF_FIELD, ""))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not (sent and expected and same_secret(sent, expected)):
        return _login_form(
            request, target, error=say(request, "login_form_expired"), status_code=403
        )
    try:
        signed_in = await auth.sign_in(
            app_context(request),
            request,
            str(form.get("username", "")),
            str(form.get("password", "")),
        )
    except ApiError as exc:
        return _login_form(request, target, error=exc.message)
    response = RedirectResponse(target, status_code=303)
    auth.set_session_cookies(response, app_context(request), signed_in.secret, signed_in.csrf_token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (CSRF-checked by the API)."""
    _, token = await form_fields(request)
    async with Backend(request, token) as api:
        await api.call("POST", "/auth/logout")
    response = RedirectResponse("/login", status_code=303)
    auth.clear_session_cookies(response)
    return response


@router.get("/lang/{code}")
async def switch_language(code: str, request: Request) -> Response:
    """Remember the browser's language and go back."""
    response = RedirectResponse(
        local_path(request.query_params.get("next", "/jobs")), status_code=303
    )
    if code in LANGUAGES:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="lax")
    return response


@router.get("/")
async def home() -> Response:
    """The results table is the start page."""
    return RedirectResponse("/jobs", status_code=303)
