"""CRUD /api/v1/rules."""

from fastapi import APIRouter, status

from pulmogate.api.auditing import audit_change
from pulmogate.api.crud import rules as crud
from pulmogate.api.deps import ContextDep, OperatorDep, SessionDep
from pulmogate.api.routes.responses import conflict, not_found
from pulmogate.api.schemas import DestinationOut, RuleCreate, RuleOut, RuleUpdate
from pulmogate.common.db.models import RoutingRule

router = APIRouter(prefix="/rules", tags=["rules"])

NOT_FOUND = not_found("rule")
CONFLICT = conflict("Another rule has this name")


def rule_out(rule: RoutingRule) -> RuleOut:
    """The API view of a rule, with its destinations and their ids."""
    return RuleOut(
        id=rule.id,
        name=rule.name,
        enabled=rule.enabled,
        priority=rule.priority,
        source_ip=rule.source_ip,
        source_ae_title=rule.source_ae_title,
        study_description_filter=rule.study_description_filter,
        series_description_filter=rule.series_description_filter,
        ttl_days=rule.ttl_days,
        failure_notices=rule.failure_notices,
        destination_ids=[d.id for d in rule.destinations],
        destinations=[DestinationOut.model_validate(d) for d in rule.destinations],
    )


@router.get("", response_model=list[RuleOut])
async def list_rules(session: SessionDep, _user: OperatorDep) -> list[RuleOut]:
    """All rules in matching order (priority, then name)."""
    return [rule_out(r) for r in await crud.list_rules(session)]


@router.post("", response_model=RuleOut, status_code=status.HTTP_201_CREATED, responses=CONFLICT)
async def create_rule(
    body: RuleCreate, session: SessionDep, user: OperatorDep, ctx: ContextDep
) -> RuleOut:
    """Add a rule (a description filter too slow on the probe inputs is refused, 422)."""
    await crud.check_filter_speed(body, ctx.settings.rule_regex_timeout_ms / 1000)
    audit_change(session, user, "rule.create", f"rule {body.name!r}", body.model_dump(mode="json"))
    return rule_out(await crud.create_rule(session, body))


@router.get("/{rule_id}", response_model=RuleOut, responses=NOT_FOUND)
async def get_rule(rule_id: int, session: SessionDep, _user: OperatorDep) -> RuleOut:
    """One rule."""
    return rule_out(await crud.get_rule(session, rule_id))


@router.patch("/{rule_id}", response_model=RuleOut, responses={**NOT_FOUND, **CONFLICT})
async def update_rule(
    rule_id: int, body: RuleUpdate, session: SessionDep, user: OperatorDep, ctx: ContextDep
) -> RuleOut:
    """Change some fields of a rule (filters are checked as on create)."""
    await crud.check_filter_speed(body, ctx.settings.rule_regex_timeout_ms / 1000)
    audit_change(
        session,
        user,
        "rule.update",
        f"rule {rule_id}",
        body.model_dump(mode="json", exclude_unset=True),
    )
    return rule_out(await crud.update_rule(session, rule_id, body))


@router.delete("/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_rule(rule_id: int, session: SessionDep, user: OperatorDep) -> None:
    """Remove a rule."""
    audit_change(session, user, "rule.delete", f"rule {rule_id}")
    await crud.delete_rule(session, rule_id)
