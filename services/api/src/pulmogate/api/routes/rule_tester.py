"""POST /api/v1/rules/test: which rule would route a series, and why the others would not."""

from fastapi import APIRouter

from pulmogate.api.access import Operator
from pulmogate.api.crud import rules as crud
from pulmogate.api.deps import SessionDep
from pulmogate.api.operations_schemas import RuleTestRequest, RuleTestResult, RuleVerdict
from pulmogate.common.routing import SeriesSource, describe_no_match, mismatches, ordered

router = APIRouter(prefix="/rules", tags=["rules"])


@router.post("/test", response_model=RuleTestResult)
async def test_rules(body: RuleTestRequest, session: SessionDep, _user: Operator) -> RuleTestResult:
    """Match sample attributes against every rule, exactly as the router does."""
    source = SeriesSource(
        peer_ip=body.source_ip,
        calling_ae=body.calling_ae,
        study_description=body.study_description,
        series_description=body.series_description,
    )
    verdicts = []
    winner = None
    for rule in ordered(await crud.list_rules(session)):
        reasons = mismatches(rule, source)
        if not rule.enabled:
            reasons = ["disabled", *reasons]
        matches = not reasons
        if matches and winner is None:
            winner = rule
        verdicts.append(
            RuleVerdict(
                id=rule.id,
                name=rule.name,
                enabled=rule.enabled,
                priority=rule.priority,
                matches=matches,
                reasons=reasons,
            )
        )
    if winner is None:
        explanation = describe_no_match(source)
    else:
        earlier = [v.name for v in verdicts if v.id != winner.id and v.matches]
        explanation = f"rule {winner.name!r} (priority {winner.priority}) matches" + (
            f"; later matches not used: {', '.join(earlier)}" if earlier else ""
        )
    return RuleTestResult(
        matched_rule_id=winner.id if winner else None,
        matched_rule_name=winner.name if winner else None,
        explanation=explanation,
        rules=verdicts,
    )
