"""POST /api/v1/rules/test: which rule would route a series, and why the others would not."""

import asyncio

from fastapi import APIRouter

from pulmogate.api.crud import rules as crud
from pulmogate.api.deps import ContextDep, OperatorDep, SessionDep
from pulmogate.api.operations_schemas import RuleTestRequest, RuleTestResult, RuleVerdict
from pulmogate.common.routing import (
    RuleSnapshot,
    SeriesSource,
    describe_no_match,
    mismatches,
    ordered,
)

router = APIRouter(prefix="/rules", tags=["rules"])


def verdicts(
    rules: list[RuleSnapshot], source: SeriesSource, timeout_s: float
) -> list[RuleVerdict]:
    """Each rule's verdict, in matching order (runs in a worker thread: filters take time)."""
    found = []
    for rule in ordered(rules):
        reasons = mismatches(rule, source, timeout_s)
        if not rule.enabled:
            reasons = ["disabled", *reasons]
        found.append(
            RuleVerdict(
                id=rule.id,
                name=rule.name,
                enabled=rule.enabled,
                priority=rule.priority,
                matches=not reasons,
                reasons=reasons,
            )
        )
    return found


@router.post("/test", response_model=RuleTestResult)
async def test_rules(
    body: RuleTestRequest, session: SessionDep, ctx: ContextDep, _user: OperatorDep
) -> RuleTestResult:
    """Match sample attributes against every rule, exactly as the router does.

    Each description filter gets ``RULE_REGEX_TIMEOUT_MS``; one that runs out is reported
    as not matching with REGEX_TIMEOUT in its reasons.
    """
    source = SeriesSource(
        peer_ip=body.source_ip,
        calling_ae=body.calling_ae,
        study_description=body.study_description,
        series_description=body.series_description,
    )
    rules = [RuleSnapshot.of(rule) for rule in await crud.list_rules(session)]
    timeout_s = ctx.settings.rule_regex_timeout_ms / 1000
    found = await asyncio.to_thread(verdicts, rules, source, timeout_s)
    winner = next((v for v in found if v.matches), None)
    if winner is None:
        explanation = describe_no_match(source)
    else:
        earlier = [v.name for v in found if v.id != winner.id and v.matches]
        explanation = f"rule {winner.name!r} (priority {winner.priority}) matches" + (
            f"; later matches not used: {', '.join(earlier)}" if earlier else ""
        )
    return RuleTestResult(
        matched_rule_id=winner.id if winner else None,
        matched_rule_name=winner.name if winner else None,
        explanation=explanation,
        rules=found,
    )
