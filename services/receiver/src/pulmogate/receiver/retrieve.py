"""C-MOVE and C-GET sub-operations: where a move goes, what it proposes, what each sends.

pynetdicom counts completed/failed/warning sub-operations from the C-STORE answers; here
each held instance becomes a dataset to send, or a placeholder that fails with its SOP
Instance UID listed when its file is gone.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import structlog
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.presentation import PresentationContext, build_context
from sqlalchemy import select

from pulmogate.common.db.models import Destination
from pulmogate.common.db.session import Database
from pulmogate.common.dicom.statuses import STATUS_CANCEL, STATUS_PENDING
from pulmogate.receiver.query import HeldInstance

log = structlog.get_logger("pulmogate.receiver")

MAX_CONTEXTS = 128
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


@dataclass(frozen=True)
class MoveDestination:
    """A peer a C-MOVE may send to."""

    ae_title: str
    host: str
    port: int


async def find_move_destination(db: Database, ae_title: str) -> MoveDestination | None:
    """The enabled configured destination with this AE title, if any."""
    async with db.session() as session:
        row = await session.scalar(
            select(Destination)
            .where(Destination.ae_title == ae_title.strip(), Destination.enabled.is_(True))
            .order_by(Destination.id)
            .limit(1)
        )
    return None if row is None else MoveDestination(row.ae_title, row.host, row.port)


def move_contexts(instances: Sequence[HeldInstance]) -> list[PresentationContext]:
    """One context per (SOP class, stored transfer syntax); uncompressed ones may convert."""
    contexts: list[PresentationContext] = []
    seen: set[tuple[str, str]] = set()
    for item in instances:
        syntax = item.transfer_syntax_uid or ExplicitVRLittleEndian
        if (item.sop_class_uid, syntax) in seen:
            continue
        seen.add((item.sop_class_uid, syntax))
        if syntax in UNCOMPRESSED:
            syntaxes = [syntax, *(s for s in UNCOMPRESSED if s != syntax)]
        else:
            syntaxes = [syntax]
        contexts.append(build_context(item.sop_class_uid, syntaxes))
    return contexts[:MAX_CONTEXTS]


def load_instance(item: HeldInstance) -> Dataset:
    """The stored dataset; when unreadable, a placeholder whose C-STORE fails and is listed."""
    try:
        return dcmread(item.path)
    except Exception as exc:
        log.warning(
            "instance to retrieve unreadable",
            sop_instance_uid=item.sop_instance_uid,
            error=type(exc).__name__,
        )
        missing = Dataset()
        missing.SOPInstanceUID = item.sop_instance_uid
        return missing


def sub_operations(
    instances: Sequence[HeldInstance], is_cancelled: Callable[[], bool]
) -> Iterator[tuple[int, Dataset | None]]:
    """(Pending, dataset) per instance, or one Cancel when the peer cancels."""
    for item in instances:
        if is_cancelled():
            yield STATUS_CANCEL, None
            return
        yield STATUS_PENDING, load_instance(item)
