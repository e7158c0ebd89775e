"""POST /api/v1/destinations/{id}/echo: a C-ECHO to check that a destination answers."""

import asyncio
import time

from fastapi import APIRouter

from pulmogate.api.crud import destinations as crud
from pulmogate.api.deps import ContextDep, OperatorDep, SessionDep
from pulmogate.api.operations_schemas import EchoResult
from pulmogate.api.routes.responses import not_found
from pulmogate.common.dicom.scu import echo

router = APIRouter(prefix="/destinations", tags=["destinations"])

ECHO_TIMEOUT_S = 15.0


@router.post(
    "/{destination_id}/echo", response_model=EchoResult, responses=not_found("destination")
)
async def echo_destination(
    destination_id: int, session: SessionDep, ctx: ContextDep, _user: OperatorDep
) -> EchoResult:
    """Associate with the destination and send C-ECHO; the answer says whether it worked."""
    dest = await crud.get_destination(session, destination_id)
    peer = f"{dest.ae_title}@{dest.host}:{dest.port}"
    started = time.monotonic()
    try:
        ok = await asyncio.wait_for(
            asyncio.to_thread(
                echo, dest.host, dest.port, dest.ae_title, calling_aet=ctx.settings.scu_ae_title
            ),
            ECHO_TIMEOUT_S,
        )
        message = (
            f"C-ECHO to {peer} succeeded"
            if ok
            else f"C-ECHO to {peer} failed: no association or a failure status"
        )
    except TimeoutError:
        ok, message = False, f"C-ECHO to {peer} failed: no answer within {ECHO_TIMEOUT_S:g} s"
    except Exception as exc:
        ok, message = False, f"C-ECHO to {peer} failed: {type(exc).__name__}: {exc}"[:300]
    return EchoResult(
        destination_id=dest.id,
        ok=ok,
        message=message,
        elapsed_ms=round((time.monotonic() - started) * 1000, 1),
    )
