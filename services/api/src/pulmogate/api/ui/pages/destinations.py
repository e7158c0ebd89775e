"""Destinations: list, add, edit, delete, and a C-ECHO test."""

from typing import Any

from fastapi import APIRouter, Request, Response

from pulmogate.api.ui.backend import Backend
from pulmogate.api.ui.pages.kit import back, form_fields, outcome, render, say, whoami
from pulmogate.common.dicom.encoding import ImageEncoding

router = APIRouter(include_in_schema=False)
FIELDS = ("name", "host", "port", "ae_title", "image_encoding")
ENCODINGS = [e.value for e in ImageEncoding]


def _body(fields: dict[str, Any]) -> dict[str, Any]:
    """The API body from the form (a form without the encoding leaves it as it is)."""
    body: dict[str, Any] = {k: fields.get(k, "") for k in FIELDS}
    if not body["image_encoding"]:
        del body["image_encoding"]
    return body


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
        encodings=ENCODINGS,
    )


@router.post("/destinations")
async def create_destination(request: Request) -> Response:
    """Add a destination from the form."""
    fields, token = await form_fields(request)
    body = _body(fields)
    async with Backend(request, token) as api:
        answer = await api.call("POST", "/destinations", json=body)
    return outcome(answer, "/destinations", say(request, "destination_added", name=body["name"]))


@router.get("/destinations/{destination_id}")
async def destination_edit_page(destination_id: int, request: Request) -> Response:
    """A destination's form, filled in, to change it."""
    me = await whoami(request)
    async with Backend(request) as api:
        destination = await api.get(f"/destinations/{destination_id}")
    if not destination.ok:
        return back("/destinations", error=destination.error)
    return render(
        request, "destination_edit.html", me, destination=destination.data, encodings=ENCODINGS
    )


@router.post("/destinations/{destination_id}")
async def update_destination(destination_id: int, request: Request) -> Response:
    """Save the edited destination."""
    fields, token = await form_fields(request)
    body = _body(fields)
    body["enabled"] = fields.get("enabled") == "on"
    async with Backend(request, token) as api:
        answer = await api.call("PATCH", f"/destinations/{destination_id}", json=body)
    if not answer.ok:
        return back(f"/destinations/{destination_id}", error=answer.error)
    return back("/destinations", notice=say(request, "destination_saved", name=body["name"]))


@router.post("/destinations/{destination_id}/delete")
async def delete_destination(destination_id: int, request: Request) -> Response:
    """Remove a destination (the API refuses one still in use)."""
    _, token = await form_fields(request)
    async with Backend(request, token) as api:
        answer = await api.call("DELETE", f"/destinations/{destination_id}")
    return outcome(answer, "/destinations", say(request, "destination_deleted", id=destination_id))


@router.post("/destinations/{destination_id}/echo")
async def echo_destination(destination_id: int, request: Request) -> Response:
    """C-ECHO the destination and show the outcome."""
    _, token = await form_fields(request)
    async with Backend(request, token) as api:
        answer = await api.call("POST", f"/destinations/{destination_id}/echo")
    if not answer.ok:
        return back("/destinations", error=answer.error)
    message = f"{answer.data['message']} ({answer.data['elapsed_ms']:.0f} ms)"
    if answer.data["ok"]:
        return back("/destinations", notice=message)
    return back("/destinations", error=message)
