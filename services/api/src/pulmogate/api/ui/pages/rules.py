"""Routing rules: list, add, edit, enable, delete, and the rule tester."""

from typing import Any

from fastapi import APIRouter, Request, Response

from pulmogate.api.ui.backend import Backend
from pulmogate.api.ui.pages.kit import back, form_fields, outcome, render, say, whoami

router = APIRouter(include_in_schema=False)


def _rule_body(fields: dict[str, Any]) -> dict[str, Any]:
    ids = [int(x) for x in str(fields.get("destination_ids", "")).split(",") if x.strip()]
    body: dict[str, Any] = {
        "name": fields.get("name", ""),
        "enabled": fields.get("enabled") == "on",
        "failure_notices": fields.get("failure_notices") == "on",
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
    fields, token = await form_fields(request)
    form = await request.form()
    fields["destination_ids"] = ",".join(str(v) for v in form.getlist("destination_ids"))
    async with Backend(request, token) as api:
        answer = await api.call("POST", "/rules", json=_rule_body(fields))
    return outcome(answer, "/rules", say(request, "rule_added", name=fields.get("name", "")))


@router.post("/rules/test")
async def test_rules(request: Request) -> Response:
    """Run the rule tester and show its verdicts on the rules page."""
    me = await whoami(request)
    fields, token = await form_fields(request)
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
    fields, token = await form_fields(request)
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
    fields, token = await form_fields(request)
    enabled = fields.get("enabled") == "true"
    async with Backend(request, token) as api:
        answer = await api.call("PATCH", f"/rules/{rule_id}", json={"enabled": enabled})
    return outcome(
        answer, "/rules", say(request, "rule_enabled" if enabled else "rule_disabled", id=rule_id)
    )


@router.post("/rules/{rule_id}/delete")
async def delete_rule(rule_id: int, request: Request) -> Response:
    """Remove a rule."""
    _, token = await form_fields(request)
    async with Backend(request, token) as api:
        answer = await api.call("DELETE", f"/rules/{rule_id}")
    return outcome(answer, "/rules", say(request, "rule_deleted", id=rule_id))
