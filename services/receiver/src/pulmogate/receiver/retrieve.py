"""C-MOVE and C-GET sub-operations: where a move goes, what it proposes, what each sends.

pynetdicom counts completed/failed/warning sub-operations from the C-STORE answers; here
each held instance becomes a dataset to send, or a placeholder that fails with its SOP
Instance UID listed when its file is gone or the peer accepted no syntax it can go in.

Instances are sent as stored when the peer accepted that transfer syntax. A peer that took
only uncompressed syntaxes for the SOP class (dcmtk's ``storescp`` and many viewers by
default) gets the instance decoded: a JPEG result picture keeps its lossy marks, a JPEG
Lossless CT slice its exact pixels, and the SOP Instance UID stays.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import structlog
from pydicom import Dataset, dcmread
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, build_context
from sqlalchemy import select

from pulmogate.common.db.models import Destination
from pulmogate.common.db.session import Database
from pulmogate.common.dicom.encoding import decoded
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


def stored_syntax(path: str) -> str:
    """The transfer syntax of a stored file (results have no column for it), from its
    file meta alone; Explicit VR Little Endian when that cannot be read."""
    try:
        return str(read_file_meta_info(path).TransferSyntaxUID)
    except Exception:
        return ExplicitVRLittleEndian


def move_contexts(instances: Sequence[HeldInstance]) -> list[PresentationContext]:
    """One context per (SOP class, stored transfer syntax), uncompressed ones with both
    uncompressed syntaxes; then, for a class stored otherwise, one uncompressed context to
    fall back on (the instance is decoded for it)."""
    stored: list[PresentationContext] = []
    fallback: list[PresentationContext] = []
    seen: set[tuple[str, str]] = set()
    for item in instances:
        syntax = item.transfer_syntax_uid or stored_syntax(item.path)
        if (item.sop_class_uid, syntax) in seen:
            continue
        seen.add((item.sop_class_uid, syntax))
        if syntax in UNCOMPRESSED:
            syntaxes = [syntax, *(s for s in UNCOMPRESSED if s != syntax)]
            stored.append(build_context(item.sop_class_uid, syntaxes))
            continue
        stored.append(build_context(item.sop_class_uid, [syntax]))
        if (item.sop_class_uid, "uncompressed") not in seen:
            seen.add((item.sop_class_uid, "uncompressed"))
            fallback.append(build_context(item.sop_class_uid, list(UNCOMPRESSED)))
    return [*stored, *fallback][:MAX_CONTEXTS]


class AcceptedSyntaxes:
    """The transfer syntaxes the peer accepted for each SOP class we send, on the
    association the sub-operations go over: for C-MOVE learnt when the destination
    accepts (EVT_ACCEPTED), for C-GET the requestor's."""

    def __init__(self, assoc: Association | None = None) -> None:
        self.by_class: dict[str, set[UID]] = {}
        if assoc is not None:
            self.learn(assoc)

    def learn(self, assoc: Association) -> None:
        """Take the association's accepted contexts in which we are the SCU."""
        by_class: dict[str, set[UID]] = {}
        for context in assoc.accepted_contexts:
            if context.as_scu:
                by_class.setdefault(str(context.abstract_syntax), set()).add(
                    UID(context.transfer_syntax[0])
                )
        self.by_class = by_class


def ready_to_send(ds: Dataset, accepted: set[UID]) -> Dataset | None:
    """``ds`` as it can go in one of the ``accepted`` syntaxes of its SOP class: as stored,
    or decoded when only an uncompressed syntax was accepted; None when it cannot go."""
    stored = UID(str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)))
    if stored in accepted:
        return ds
    if not accepted & set(UNCOMPRESSED):
        return None
    # Decoded to Explicit VR Little Endian; uncompressed and deflated data pynetdicom
    # writes in whichever uncompressed syntax was accepted.
    return decoded(ds) if stored.is_compressed else ds


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
        return _placeholder(item)


def _placeholder(item: HeldInstance) -> Dataset:
    missing = Dataset()
    missing.SOPInstanceUID = item.sop_instance_uid
    return missing


def _prepared(item: HeldInstance, peer: AcceptedSyntaxes) -> tuple[Dataset, bool]:
    """The dataset to send for ``item`` and whether it was decoded for the peer."""
    ds = load_instance(item)
    if "SOPClassUID" not in ds:
        return ds, False
    accepted = peer.by_class.get(item.sop_class_uid, set())
    try:
        ready = ready_to_send(ds, accepted)
    except Exception as exc:
        log.warning(
            "instance to retrieve could not be decoded",
            sop_instance_uid=item.sop_instance_uid,
            error=type(exc).__name__,
        )
        return _placeholder(item), False
    if ready is None:
        log.warning(
            "instance to retrieve not sent: the peer accepted none of its syntaxes",
            sop_instance_uid=item.sop_instance_uid,
            stored=UID(str(ds.file_meta.get("TransferSyntaxUID", ""))).name,
            accepted=sorted(s.name for s in accepted),
        )
        return _placeholder(item), False
    return ready, ready is not ds  # decoding makes a copy


def sub_operations(
    instances: Sequence[HeldInstance],
    is_cancelled: Callable[[], bool],
    peer: AcceptedSyntaxes,
) -> Iterator[tuple[int, Dataset | None]]:
    """(Pending, dataset) per instance, or one Cancel when the peer cancels."""
    decoded_count = 0
    for item in instances:
        if is_cancelled():
            yield STATUS_CANCEL, None
            return
        ds, was_decoded = _prepared(item, peer)
        decoded_count += was_decoded
        yield STATUS_PENDING, ds
    if decoded_count:
        log.info(
            "retrieved instances sent decoded: the peer accepted only uncompressed syntaxes",
            instances=decoded_count,
        )
