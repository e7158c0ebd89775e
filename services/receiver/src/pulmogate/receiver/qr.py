"""Query/Retrieve SCP on the receiver's AE: Patient and Study Root C-FIND, C-MOVE, C-GET.

Handlers run on pynetdicom's association threads and wait on the service loop for their
database work, like C-STORE. Associations are accepted (or not) by the same AE and policy
as C-STORE; this module only adds presentation contexts and handlers.
"""

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import structlog
from pydicom import Dataset
from pydicom.uid import UID
from pynetdicom import AE, build_context, evt
from pynetdicom.association import Association
from pynetdicom.events import Event as DicomEvent
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    Comprehensive3DSRStorage,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from pulmogate.common.db.session import Database
from pulmogate.common.dicom.scu import NO_DELAY, keep_responses, send_at_once
from pulmogate.common.dicom.statuses import (
    STATUS_CANCEL,
    STATUS_NOT_AUTHORIZED,
    STATUS_PENDING,
    STATUS_UNABLE_TO_PROCESS,
)
from pulmogate.common.dicom.syntaxes import ACCEPTED_STORAGE_CLASSES, ACCEPTED_TRANSFER_SYNTAXES
from pulmogate.receiver.output_index import index_outputs
from pulmogate.receiver.query import (
    HeldInstance,
    Model,
    Query,
    QueryRefused,
    find,
    instances_to_retrieve,
    parse_identifier,
    response,
)
from pulmogate.receiver.retrieve import (
    AcceptedSyntaxes,
    find_move_destination,
    move_contexts,
    sub_operations,
)

log = structlog.get_logger("pulmogate.receiver")

T = TypeVar("T")

DB_WAIT_S = 120.0

MODELS: dict[str, Model] = {
    PatientRootQueryRetrieveInformationModelFind: Model.PATIENT_ROOT,
    PatientRootQueryRetrieveInformationModelMove: Model.PATIENT_ROOT,
    PatientRootQueryRetrieveInformationModelGet: Model.PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelFind: Model.STUDY_ROOT,
    StudyRootQueryRetrieveInformationModelMove: Model.STUDY_ROOT,
    StudyRootQueryRetrieveInformationModelGet: Model.STUDY_ROOT,
}
VERIFICATION_ONLY = [build_context(Verification)]
# Result classes the AE only ever sends (C-GET); offered only to peers proposing the SCP role.
RESULT_STORAGE_CLASSES: list[UID] = [
    SecondaryCaptureImageStorage,
    Comprehensive3DSRStorage,
    SegmentationStorage,
]


def failure(code: int, reason: str) -> Dataset:
    """A DIMSE failure status with a readable reason."""
    status = Dataset()
    status.Status = code
    status.ErrorComment = reason[:64]
    return status


def add_query_retrieve_contexts(ae: AE) -> None:
    """Q/R models, and storage contexts a C-GET requestor may take the SCP role for."""
    for sop_class in MODELS:
        ae.add_supported_context(sop_class)
    for sop_class in ACCEPTED_STORAGE_CLASSES:
        # Received as SCP (C-STORE) and sent back as SCU on a C-GET association.
        ae.add_supported_context(
            sop_class, ACCEPTED_TRANSFER_SYNTAXES, scu_role=True, scp_role=True
        )
    for sop_class in RESULT_STORAGE_CLASSES:
        ae.add_supported_context(
            sop_class, ACCEPTED_TRANSFER_SYNTAXES, scu_role=False, scp_role=True
        )


class QueryRetrieveSCP:
    """C-FIND, C-MOVE and C-GET handlers over what PulmoGate holds."""

    def __init__(
        self,
        *,
        ae_title: str,
        db: Database,
        loop: asyncio.AbstractEventLoop,
        is_refused: Callable[[Association], bool] = lambda assoc: False,
        guard_result_classes: bool = True,
    ) -> None:
        self.ae_title = ae_title
        self.db = db
        self.loop = loop
        self.is_refused = is_refused
        self.guard_result_classes = guard_result_classes

    def handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        """The event handlers to bind on the AE's server."""
        return [
            (evt.EVT_CONN_OPEN, send_at_once),
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_MOVE, self.on_move),
            (evt.EVT_C_GET, self.on_get),
        ]

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=DB_WAIT_S)

    def on_requested(self, event: DicomEvent) -> None:
        """Offer result storage classes only to a requestor that proposed their SCP role.

        Without role selection a context is accepted in the default roles, which would let
        a peer C-STORE a Secondary Capture into the receiver; it accepts only CT. (Unless
        non-CT objects are accepted and discarded: then every storage class is offered.)
        """
        if event.assoc.is_rejected or event.assoc.is_aborted:  # by the source policy
            return
        if not self.guard_result_classes:
            return
        acceptor = event.assoc.acceptor
        proposed = event.assoc.requestor.role_selection
        result_classes = set(RESULT_STORAGE_CLASSES)
        acceptor.supported_contexts = [
            context
            for context in acceptor.supported_contexts
            if context.abstract_syntax not in result_classes
            or (
                context.abstract_syntax in proposed
                and bool(proposed[context.abstract_syntax].scp_role)
            )
        ]

    def _parse(self, event: DicomEvent) -> Query:
        model = MODELS[str(event.request.AffectedSOPClassUID)]
        try:
            identifier = event.identifier
            return parse_identifier(identifier, model)
        except QueryRefused:
            raise
        except Exception as exc:
            raise QueryRefused(
                STATUS_UNABLE_TO_PROCESS, f"undecodable identifier: {type(exc).__name__}"
            ) from exc

    def _calling(self, event: DicomEvent) -> str:
        return str(event.assoc.requestor.ae_title).strip()

    def _not_authorised(self, event: DicomEvent) -> Dataset | None:
        """The source policy's refusal (same as for C-STORE), logged, or None."""
        if not self.is_refused(event.assoc):
            return None
        log.warning(
            "query/retrieve refused: sender not named by any enabled rule",
            calling_ae=self._calling(event),
            peer_ip=str(event.assoc.requestor.address),
        )
        return failure(STATUS_NOT_AUTHORIZED, "sender not named by any enabled rule")

    def on_find(self, event: DicomEvent) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """C-FIND: one pending response per match, cancel honoured between them."""
        refused = self._not_authorised(event)
        if refused is not None:
            yield refused, None
            return
        try:
            query = self._parse(event)
            self._wait(index_outputs(self.db))
            matches = self._wait(find(self.db, query))
        except QueryRefused as exc:
            log.warning("query refused", calling_ae=self._calling(event), reason=str(exc))
            yield failure(exc.status, str(exc)), None
            return
        except Exception as exc:
            log.error("query failed", calling_ae=self._calling(event), error=repr(exc))
            yield failure(STATUS_UNABLE_TO_PROCESS, "query failed"), None
            return
        log.info(
            "query answered",
            calling_ae=self._calling(event),
            level=query.level.value,
            matches=len(matches),
        )
        for match in matches:
            if event.is_cancelled:
                yield STATUS_CANCEL, None
                return
            yield STATUS_PENDING, response(query, match, retrieve_ae=self.ae_title)

    def _instances(self, event: DicomEvent) -> list[HeldInstance]:
        query = self._parse(event)
        self._wait(index_outputs(self.db))
        return self._wait(instances_to_retrieve(self.db, query))

    def on_move(self, event: DicomEvent) -> Iterator[Any]:
        """C-MOVE: destination, then the number of sub-operations, then each instance."""
        destination_ae = str(event.move_destination or "").strip()
        destination = self._wait(find_move_destination(self.db, destination_ae))
        if destination is None:
            log.warning(
                "move refused: destination unknown",
                calling_ae=self._calling(event),
                move_destination=destination_ae,
            )
            yield None, None
            return
        refused = self._not_authorised(event)
        if refused is not None:
            # pynetdicom answers a status only after the destination, a sub-operation count
            # and an association to the destination; without a context of ours to propose
            # that association fails (0xC515). Verification is proposed and nothing is sent.
            yield destination.host, destination.port, {"contexts": VERIFICATION_ONLY}
            yield 1
            yield refused, None
            return
        try:
            instances = self._instances(event)
        except QueryRefused as exc:
            log.warning("retrieve refused", calling_ae=self._calling(event), reason=str(exc))
            yield destination.host, destination.port
            yield 1
            yield failure(exc.status, str(exc)), None
            return
        log.info(
            "move started",
            calling_ae=self._calling(event),
            move_destination=destination_ae,
            instances=len(instances),
        )
        peer = AcceptedSyntaxes()

        def on_accepted(accepted: DicomEvent) -> None:
            peer.learn(accepted.assoc)
            keep_responses(accepted.assoc)  # pynetdicom's reactor race, see scu.py

        handlers = [*NO_DELAY, (evt.EVT_ACCEPTED, on_accepted)]
        yield (
            destination.host,
            destination.port,
            {"contexts": move_contexts(instances), "evt_handlers": handlers},
        )
        yield len(instances)
        yield from sub_operations(instances, lambda: event.is_cancelled, peer)

    def on_get(self, event: DicomEvent) -> Iterator[Any]:
        """C-GET: the number of sub-operations, then each instance on this association."""
        refused = self._not_authorised(event)
        if refused is not None:
            yield 1
            yield refused, None
            return
        try:
            instances = self._instances(event)
        except QueryRefused as exc:
            log.warning("retrieve refused", calling_ae=self._calling(event), reason=str(exc))
            yield 1
            yield failure(exc.status, str(exc)), None
            return
        log.info("get started", calling_ae=self._calling(event), instances=len(instances))
        yield len(instances)
        peer = AcceptedSyntaxes(event.assoc)
        yield from sub_operations(instances, lambda: event.is_cancelled, peer)
