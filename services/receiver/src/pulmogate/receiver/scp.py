"""The DICOM SCP: association policy, C-ECHO and C-STORE handlers.

Connections and associations are admitted and read under the edge bounds of
``admission`` and ``bounded_dul`` (``server`` wires them into pynetdicom). Handlers run on
pynetdicom's association threads. A C-STORE writes the encoded dataset as received (no
pixel decoding, the peer in the file meta) with ``atomic_write`` and answers success once the
file is durable: from then on the instance cannot be lost. Its rows are recorded in groups by
``recorder`` (at the next start by ``recovery`` when the process died first). What must be
known before the answer, whether the SOP Instance UID is stored in another series, is asked
of the database by ``sop_index`` (on Postgres while the file is written and fsynced).
"""

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any, TypeVar, cast

import structlog
from pydicom import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event as DicomEvent
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pulmogate.common.db.models import utcnow
from pulmogate.common.db.session import Database
from pulmogate.common.dicom.intake.header import CannotUnderstand, read_received, uid_text
from pulmogate.common.dicom.intake.kinds import class_name, is_localizer
from pulmogate.common.dicom.intake.rows import Peer
from pulmogate.common.dicom.intake.values import instance_values
from pulmogate.common.dicom.statuses import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_NOT_AUTHORIZED,
    STATUS_OUT_OF_RESOURCES,
    STATUS_PROCESSING_FAILURE,
    STATUS_SUCCESS,
)
from pulmogate.common.dicom.syntaxes import ACCEPTED_STORAGE_CLASSES, ACCEPTED_TRANSFER_SYNTAXES
from pulmogate.common.disk import DISK_FULL_ERRNOS, watermark_refusal
from pulmogate.common.metrics import DICOM_REFUSED, INSTANCES_DISCARDED, INSTANCES_RECEIVED
from pulmogate.common.routing import ip_matches
from pulmogate.common.storage import Storage, atomic_write
from pulmogate.receiver.admission import Admission, AdmissionLimits
from pulmogate.receiver.bounded_dul import EdgeLimits
from pulmogate.receiver.file_meta import file_preamble
from pulmogate.receiver.markers import SeriesMarkers
from pulmogate.receiver.other_objects import (
    ANY_TRANSFER_SYNTAX,
    CT_CLASSES,
    REJECT,
    DiscardTally,
    is_ct_class,
    storage_classes,
)
from pulmogate.receiver.pending import PendingInstances
from pulmogate.receiver.policy import SourcePattern, brings_images, enabled_sources, refusal
from pulmogate.receiver.qr import QueryRetrieveSCP, add_query_retrieve_contexts
from pulmogate.receiver.recorder import GROUP_INTERVAL_S, InstanceRecorder
from pulmogate.receiver.records import AssociationEnded
from pulmogate.receiver.server import GuardedServer, start_guarded_server
from pulmogate.receiver.sop_index import StoredSopIndex

log = structlog.get_logger("pulmogate.receiver")

T = TypeVar("T")

REJECT_PERMANENT, REJECT_SOURCE_USER, REJECT_CALLING_AE = 0x01, 0x01, 0x03
REJECT_TRANSIENT, REJECT_SOURCE_PROVIDER, REJECT_LOCAL_LIMIT = 0x02, 0x03, 0x02

DB_WAIT_S = 120.0
CONFLICT = "SOP Instance UID already stored in another series"


class IndexUnavailable(Exception):
    """The database could not say whether the instance is stored elsewhere."""


def failure(code: int, reason: str) -> Dataset:
    """A C-STORE response status with a readable reason."""
    status = Dataset()
    status.Status = code
    status.ErrorComment = reason[:64]
    return status


class StoreSCP:
    """An AE that files CT instances durably and tracks which association brought which series."""

    def __init__(
        self,
        *,
        ae_title: str,
        storage: Storage,
        db: Database,
        loop: asyncio.AbstractEventLoop,
        accept_from: str = "any",
        disk_max_used_percent: float = 100.0,
        max_associations: int = 64,
        non_ct_objects: str = "discard",
        accept_echo_from_unknown: bool = False,
        edge: EdgeLimits | None = None,
        admission: AdmissionLimits | None = None,
        group_interval_s: float = GROUP_INTERVAL_S,
    ) -> None:
        self.ae_title = ae_title
        self.non_ct_objects = non_ct_objects
        self.max_associations = max_associations
        self.accept_from = accept_from
        self.accept_echo_from_unknown = accept_echo_from_unknown
        # Objects discarded (not a CT to analyse) are bounded as CT instances are: a whole
        # study forwarded holds summaries and multi-frame objects larger than 1 MiB.
        self.edge = replace(
            edge or EdgeLimits(),
            store_classes=CT_CLASSES | {str(uid) for uid in storage_classes(non_ct_objects)},
        )
        self.admission = Admission(admission or AdmissionLimits(max_associations=max_associations))
        self._sources: list[SourcePattern] = []  # as last read; recognises addresses early
        self.disk_max_used_percent = disk_max_used_percent
        self._refused_assocs: set[int] = set()
        self.storage = storage
        self.db = db
        self.loop = loop
        self.server: GuardedServer | None = None
        # Per association: the series it counts as open (series UID -> study UID, once an
        # instance of it was recorded as stored) and the series marks it holds.
        self._series_by_assoc: dict[int, dict[str, str]] = {}
        self._held_by_assoc: dict[int, set[tuple[str, str]]] = {}
        self._discarded: dict[int, DiscardTally] = {}
        self._lock = threading.Lock()
        self.pending = PendingInstances()
        self.markers = SeriesMarkers(storage.markers_folder())
        self.sop_index = StoredSopIndex(db, loop, DB_WAIT_S)
        self.recorder = InstanceRecorder(
            db, self.pending, self.markers, loop, interval_s=group_interval_s
        )
        self.ae = self._make_ae()

    def _make_ae(self) -> AE:
        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = True
        # Admission counts the slots; pynetdicom's own count (default 10) includes pending
        # connections, so it is set above everything Admission lets in.
        limits = self.admission.limits
        ae.maximum_associations = 2 * limits.max_associations + limits.pending_per_address
        ae.maximum_pdu_size = self.edge.max_pdu_length
        ae.acse_timeout = self.edge.request_timeout_s  # also the ARTIM timer
        ae.network_timeout = self.edge.idle_timeout_s
        ae.add_supported_context(Verification)
        for sop_class in ACCEPTED_STORAGE_CLASSES:
            ae.add_supported_context(sop_class, ACCEPTED_TRANSFER_SYNTAXES)
        add_query_retrieve_contexts(ae)
        for sop_class in storage_classes(self.non_ct_objects):
            # Stored by a PACS forwarding a study (discarded), or sent back to a C-GET requestor.
            ae.add_supported_context(sop_class, ANY_TRANSFER_SYNTAX, scu_role=True, scp_role=True)
        return ae

    @property
    def port(self) -> int:
        """The bound TCP port (useful with port 0)."""
        assert self.server is not None, "SCP not started"
        return int(self.server.server_address[1])

    def start(self, host: str, port: int) -> None:
        """Listen in pynetdicom's server thread."""
        handlers: list[Any] = [
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_ESTABLISHED, self.on_established),
            (evt.EVT_REJECTED, self.on_rejected),
            (evt.EVT_RELEASED, self.on_association_end),
            (evt.EVT_ABORTED, self.on_association_end),
            (evt.EVT_CONN_CLOSE, self.on_association_end),
            *QueryRetrieveSCP(
                ae_title=self.ae_title,
                db=self.db,
                loop=self.loop,
                is_refused=self._not_named,
                guard_result_classes=self.non_ct_objects == REJECT,
            ).handlers(),
        ]
        self.server = start_guarded_server(
            self.ae,
            (host, port),
            evt_handlers=handlers,
            limits=self.edge,
            admission=self.admission,
            may_store=lambda assoc: not self._not_named(assoc),
            known_address=self._known_address,
        )
        log.info("dicom scp listening", ae_title=self.ae_title, host=host, port=self.port)

    def stop(self) -> None:
        """Stop listening and close open associations."""
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        self.ae.shutdown()

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the service loop and block this association thread until done."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=DB_WAIT_S)

    @staticmethod
    def _peer(assoc: Association) -> Peer:
        return Peer(
            calling_ae=str(assoc.requestor.ae_title).strip(),
            called_ae=str(assoc.acceptor.ae_title).strip(),
            peer_ip=str(assoc.requestor.address),
        )

    def on_echo(self, event: DicomEvent) -> int:
        """C-ECHO: always success."""
        return STATUS_SUCCESS

    def _known_address(self, address: str) -> bool:
        """True when an enabled rule names ``address`` by IP (as of the last request read)."""
        return any(p.source_ip and ip_matches(p.source_ip, address) for p in self._sources)

    def _source_refusal(self, calling: str, peer_ip: str) -> str | None:
        """Why no enabled rule names this sender (None: one does)."""
        try:
            self._sources = self._wait(enabled_sources(self.db))
        except Exception as exc:
            return f"routing rules unavailable ({type(exc).__name__})"
        return refusal(self._sources, calling, peer_ip)

    def on_requested(self, event: DicomEvent) -> None:
        """Admission (per-peer slots) and source policy, once the request is read.

        A peer no enabled rule names is rejected under ``rules``; with
        ``accept_echo_from_unknown`` it may open a C-ECHO or Query/Retrieve association, on
        which everything but C-ECHO answers 0x0124.
        """
        assoc = event.assoc
        request = assoc.requestor.primitive
        calling = str(getattr(request, "calling_ae_title", "") or "").strip()
        peer_ip = str(assoc.requestor.address)
        reason = self._source_refusal(calling, peer_ip) if self.accept_from == "rules" else None
        known = reason is None
        contexts = getattr(request, "presentation_context_definition_list", []) or []
        if not known and (
            not self.accept_echo_from_unknown
            or brings_images(cx.abstract_syntax for cx in contexts)
        ):
            DICOM_REFUSED.labels(reason="unknown_peer").inc()
            log.warning("association rejected", reason=reason, calling_ae=calling, peer_ip=peer_ip)
            self.admission.end(id(assoc))
            assoc.acse.send_reject(REJECT_PERMANENT, REJECT_SOURCE_USER, REJECT_CALLING_AE)
            assoc.kill()  # as pynetdicom does for its own rejections: wait until the peer hung up
            return
        slot = self.admission.associate(id(assoc), calling, known=known)
        if slot is not None:
            DICOM_REFUSED.labels(reason=slot.code).inc()
            log.warning(
                "association rejected", reason=slot.message, calling_ae=calling, peer_ip=peer_ip
            )
            assoc.acse.send_reject(REJECT_TRANSIENT, REJECT_SOURCE_PROVIDER, REJECT_LOCAL_LIMIT)
            assoc.kill()
            return
        if not known:
            with self._lock:
                self._refused_assocs.add(id(assoc))

    def on_established(self, event: DicomEvent) -> None:
        """Log an accepted association with the presentation contexts it got."""
        assoc = event.assoc
        log.info(
            "association accepted",
            calling_ae=str(assoc.requestor.ae_title).strip(),
            peer_ip=str(assoc.requestor.address),
            accepted_contexts=len(assoc.accepted_contexts),
            rejected_contexts=len(assoc.rejected_contexts),
        )

    def on_rejected(self, event: DicomEvent) -> None:
        """Log why an association was rejected (e.g. a called AE title that is not ours)."""
        assoc = event.assoc
        request = assoc.requestor.primitive
        called = str(getattr(request, "called_ae_title", "") or "").strip()
        reason = (
            f"called AE title {called!r} is not {self.ae_title!r}"
            if called != self.ae_title
            else "association rejected by policy"
        )
        log.warning(
            "association rejected",
            reason=reason,
            calling_ae=str(assoc.requestor.ae_title).strip(),
            peer_ip=str(assoc.requestor.address),
        )

    def on_association_end(self, event: DicomEvent) -> None:
        """Released, aborted or dropped: the series it brought lose one open association
        (recorded after its instances' rows)."""
        if threading.current_thread() is event.assoc:
            self.sop_index.close_thread()
        with self._lock:
            counted = self._series_by_assoc.pop(id(event.assoc), {})
            held = self._held_by_assoc.pop(id(event.assoc), set())
            self._refused_assocs.discard(id(event.assoc))
            tally = self._discarded.pop(id(event.assoc), None)
        if tally is not None:
            peer = self._peer(event.assoc)
            tally.log(calling_ae=peer.calling_ae, peer_ip=peer.peer_ip)
        if counted or held:
            self.recorder.submit(
                AssociationEnded(
                    series_uids=tuple(sorted(counted)), held=tuple(sorted(held)), at=utcnow()
                )
            )

    def on_store(self, event: DicomEvent) -> int | Dataset:
        """C-STORE: file durably, then answer (the rows follow in a group)."""
        status: int | Dataset
        refused = self._refused(event)
        if refused is not None:
            INSTANCES_RECEIVED.labels(status=f"0x{int(refused.Status):04X}").inc()
            return refused
        try:
            status = self._store(event)
        except CannotUnderstand as exc:
            log.warning("instance refused", reason=str(exc))
            status = failure(STATUS_CANNOT_UNDERSTAND, str(exc))
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                log.error("storage full, instance refused", error=str(exc))
                status = failure(STATUS_OUT_OF_RESOURCES, "storage full")
            else:
                log.error("could not write instance", error=repr(exc))
                status = failure(STATUS_PROCESSING_FAILURE, "could not write instance")
        except Exception as exc:
            log.error("could not record instance", error=repr(exc))
            status = failure(STATUS_PROCESSING_FAILURE, "could not record instance")
        code = status if isinstance(status, int) else int(status.Status)
        INSTANCES_RECEIVED.labels(status=f"0x{code:04X}").inc()
        return status

    def _not_named(self, assoc: Association) -> bool:
        """True for an association the source policy admitted only for echo (Q/R asks)."""
        with self._lock:
            return id(assoc) in self._refused_assocs

    def _refused(self, event: DicomEvent) -> Dataset | None:
        """A store the source policy or the disk watermark refuses, before anything is read."""
        with self._lock:
            not_allowed = id(event.assoc) in self._refused_assocs
        if not_allowed:
            return failure(STATUS_NOT_AUTHORIZED, "sender not named by any enabled rule")
        full = watermark_refusal(self.storage.root, self.disk_max_used_percent)
        if full is not None:
            log.error("instance refused: disk watermark", reason=full)
            return failure(STATUS_OUT_OF_RESOURCES, full)
        return None

    def _discard(self, event: DicomEvent, kind: str) -> int:
        """Answer Success for an object that is not a CT image to analyse, keeping nothing."""
        with self._lock:
            self._discarded.setdefault(id(event.assoc), DiscardTally()).add(kind)
        INSTANCES_DISCARDED.labels(kind=kind).inc()
        return STATUS_SUCCESS

    def _store(self, event: DicomEvent) -> int:
        sop_class_uid = str(event.context.abstract_syntax)
        if not is_ct_class(sop_class_uid):
            return self._discard(event, class_name(sop_class_uid))
        peer = self._peer(event.assoc)
        request = cast(C_STORE, event.request)
        syntax = str(event.context.transfer_syntax)
        file_meta = file_preamble(
            sop_class_uid=str(request.AffectedSOPClassUID),
            sop_instance_uid=str(request.AffectedSOPInstanceUID),
            transfer_syntax_uid=syntax,
            peer=peer,
        )
        dataset = event.encoded_dataset(include_meta=False)
        ds = read_received(file_meta, dataset, syntax)
        if is_localizer(ds):
            return self._discard(event, f"{class_name(sop_class_uid)} (localizer)")
        study_uid = uid_text(ds, "StudyInstanceUID")
        series_uid = uid_text(ds, "SeriesInstanceUID")
        sop_uid = uid_text(ds, "SOPInstanceUID")
        path = self.storage.instance_path(study_uid, series_uid, sop_uid)
        encoded = file_meta + dataset
        values = instance_values(
            ds,
            sop_class_uid=sop_class_uid,
            transfer_syntax_uid=syntax,
            path=path,
            size_bytes=len(encoded),
        )
        if self.pending.reserve(sop_uid, series_uid) is not None:
            raise CannotUnderstand(CONFLICT)
        try:
            stored_in = self.sop_index.ask(sop_uid)
            key = (study_uid, series_uid)
            with self._lock:
                held = self._held_by_assoc.setdefault(id(event.assoc), set())
                new_hold = key not in held
                held.add(key)
            if new_hold:
                self.markers.hold(study_uid, series_uid)
            atomic_write(path, encoded)
            try:
                other = stored_in()
            except Exception as exc:
                raise IndexUnavailable(repr(exc)) from exc
            if other is not None and other != series_uid:
                path.unlink(missing_ok=True)  # its own series folder: never the stored copy
                raise CannotUnderstand(CONFLICT)
        except BaseException:
            self.pending.settle(sop_uid)
            raise
        with self._lock:
            counted = self._series_by_assoc.setdefault(id(event.assoc), {})
            first_of_series = series_uid not in counted
            counted[series_uid] = study_uid
        self.recorder.commit(
            values, peer, new_for_association=first_of_series, received_at=utcnow()
        )
        log.debug("instance stored", sop_instance_uid=sop_uid, series_uid=series_uid)
        return STATUS_SUCCESS
