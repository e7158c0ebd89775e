"""License, users and API tokens."""

from typing import Any

from fastapi import APIRouter, Request, Response

from pulmogate.api.ui.backend import Backend
from pulmogate.api.ui.pages.kit import form_fields, outcome, render, say, whoami

router = APIRouter(include_in_schema=False)


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
    fields, token = await form_fields(request)
    async with Backend(request, token) as api:
        answer = await api.call(
            "POST", "/license", json={"key": str(fields.get("key", "")).strip()}
        )
    return outcome(answer, "/license", say(request, "license_installed"))


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
    fields, token = await form_fields(request)
    body = {k: str(fields.get(k, "")) for k in ("username", "password", "role")}
    async with Backend(request, token) as api:
        answer = await api.call("POST", "/users", json=body)
    return outcome(answer, "/users", say(request, "user_added", name=body["username"]))


@router.post("/users/{user_id}/active")
async def set_user_active(user_id: int, request: Request) -> Response:
    """Activate or deactivate a user."""
    fields, token = await form_fields(request)
    active = fields.get("active") == "true"
    async with Backend(request, token) as api:
        answer = await api.call("PATCH", f"/users/{user_id}", json={"active": active})
    return outcome(
        answer,
        "/users",
        say(request, "user_activated" if active else "user_deactivated", id=user_id),
    )


@router.post("/users/{user_id}/role")
async def set_user_role(user_id: int, request: Request) -> Response:
    """Give a user another role."""
    fields, token = await form_fields(request)
    role = str(fields.get("role", ""))
    async with Backend(request, token) as api:
        answer = await api.call("PATCH", f"/users/{user_id}", json={"role": role})
    return outcome(answer, "/users", say(request, "user_role", id=user_id, role=role))


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
    fields, token = await form_fields(request)
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
    _, token = await form_fields(request)
    async with Backend(request, token) as api:
        answer = await api.call("DELETE", f"/tokens/{token_id}")
    return outcome(answer, "/tokens", say(request, "token_revoked", id=token_id))
