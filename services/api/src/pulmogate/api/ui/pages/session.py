"""Sign in and out, the language switch, the start page."""

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from pulmogate.api import auth
from pulmogate.api.errors import ApiError
from pulmogate.api.ui.backend import Backend
from pulmogate.api.ui.i18n import LANG_COOKIE, LANGUAGES
from pulmogate.api.ui.pages.kit import app_context, form_fields, local_path, render

router = APIRouter(include_in_schema=False)


@router.get("/login")
async def login_page(request: Request) -> Response:
    """The sign-in form."""
    return render(
        request, "login.html", None, next=local_path(request.query_params.get("next", ""))
    )


@router.post("/login")
async def login(request: Request) -> Response:
    """Sign in with the session login; back to the form with the reason on failure."""
    form = await request.form()
    target = local_path(str(form.get("next") or "/jobs"))
    try:
        signed_in = await auth.sign_in(
            app_context(request),
            request,
            str(form.get("username", "")),
            str(form.get("password", "")),
        )
    except ApiError as exc:
        return render(request, "login.html", None, next=target, login_error=exc.message)
    response = RedirectResponse(target, status_code=303)
    auth.set_session_cookies(response, app_context(request), signed_in.secret, signed_in.csrf_token)
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
