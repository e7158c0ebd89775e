"""GET /api/v1/dead-letters and POST /dead-letters/{queue}/requeue: poison messages.

A message whose consumer failed on every attempt is parked in ``<queue>.dead`` with the
error; operators see it here and send it back once the cause is fixed.
"""

from fastapi import APIRouter
from pydantic import BaseModel, Field

from pulmogate.api.deps import ContextDep, OperatorDep
from pulmogate.api.errors import NotFound
from pulmogate.api.routes.responses import not_found

router = APIRouter(prefix="/dead-letters", tags=["dead letters"])

# The consumer queues of the router, inference and sender services.
CONSUMER_QUEUES = ("pulmogate.router", "pulmogate.inference", "pulmogate.sender")
BODY_PREVIEW_CHARS = 2000


class DeadLetterOut(BaseModel):
    """One parked message: where it failed, why, and what it said."""

    queue: str
    routing_key: str
    error: str
    body: str = Field(description="The message (JSON; events carry ids and UIDs only)")


class Requeued(BaseModel):
    """How many parked messages went back to their queue."""

    queue: str
    requeued: int


@router.get("", response_model=list[DeadLetterOut])
async def list_dead_letters(ctx: ContextDep) -> list[DeadLetterOut]:
    """Every parked message of every consumer queue (nothing is removed)."""
    found = []
    for queue in CONSUMER_QUEUES:
        for letter in await ctx.bus.dead_letters(queue):
            found.append(
                DeadLetterOut(
                    queue=letter.queue,
                    routing_key=letter.routing_key,
                    error=letter.error,
                    body=letter.body.decode("utf-8", errors="replace")[:BODY_PREVIEW_CHARS],
                )
            )
    return found


@router.post("/{queue}/requeue", response_model=Requeued, responses=not_found("queue"))
async def requeue_dead_letters(queue: str, ctx: ContextDep, _user: OperatorDep) -> Requeued:
    """Send a queue's parked messages back to it; each gets its full number of attempts."""
    if queue not in CONSUMER_QUEUES:
        raise NotFound(f"no consumer queue {queue!r}; known: {', '.join(CONSUMER_QUEUES)}")
    return Requeued(queue=queue, requeued=await ctx.bus.requeue_dead_letters(queue))
