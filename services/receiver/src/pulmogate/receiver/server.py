"""pynetdicom's association server with the receiver's edge bounds wired in.

``AE.start_server`` offers no way to choose the association class, so this module builds
the same ``ThreadedAssociationServer`` with a request handler that (1) asks ``Admission``
for a pending slot before anything is read, (2) creates each association with a
``BoundedDUL`` and a ``BoundedDIMSE``, and (3) frees the slot when the association thread
ends, whatever ended it. ``_create_association`` follows pynetdicom 3.0's own (but shares
the supported contexts instead of copying them for each connection).
"""

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from pynetdicom import AE, evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from pulmogate.common.metrics import DICOM_REFUSED
from pulmogate.receiver.admission import Admission
from pulmogate.receiver.bounded_dul import BoundedDIMSE, BoundedDUL, EdgeLimits

log = structlog.get_logger("pulmogate.receiver")


class GuardedAssociation(Association):
    """An acceptor association read under ``EdgeLimits`` that frees its slot when it ends."""

    def __init__(
        self,
        ae: AE,
        limits: EdgeLimits,
        admission: Admission,
        may_store: Callable[[Association], bool],
    ) -> None:
        super().__init__(ae, MODE_ACCEPTOR)
        self.admission = admission
        self.dul = BoundedDUL(
            self,
            limits,
            on_request_read=lambda: admission.request_read(id(self)),
            on_closed=lambda: admission.end(id(self)),
        )
        self.dimse = BoundedDIMSE(self, limits, may_store)
        # The timeout setters push their values into the DUL's timers: set them again.
        self.acse_timeout = self.acse_timeout
        self.network_timeout = self.network_timeout

    def run_reactor(self) -> None:
        """pynetdicom's reactor; the admission slot is freed however it returns."""
        try:
            super().run_reactor()
        finally:
            self.admission.end(id(self))


class GuardedRequestHandler(RequestHandler):
    """A connection: a pending slot first, then a guarded association (or a closed socket)."""

    server: "GuardedServer"

    def handle(self) -> None:
        """Admit the connection or close it at once (nothing has been read from it)."""
        address = str(self.client_address[0])
        assoc = self._create_association()
        refusal = self.server.admission.connect(
            id(assoc), address, known_address=self.server.known_address(address)
        )
        if refusal is not None:
            DICOM_REFUSED.labels(reason=refusal.code).inc()
            log.warning(
                "connection refused", code=refusal.code, reason=refusal.message, peer_ip=address
            )
            self.server.shutdown_request(self.request)
            return
        evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
        assoc.start()

    def _create_association(self) -> GuardedAssociation:
        """As pynetdicom's, with the guarded association class."""
        server = self.server
        assoc = GuardedAssociation(self.ae, server.limits, server.admission, server.may_store)
        assoc._server = server
        timestamp = datetime.strftime(datetime.now(), "%Y%m%d%H%M%S")
        assoc.name = f"AcceptorThread@{timestamp}"
        assoc.set_socket(AssociationSocket(assoc, client_socket=self.request))
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        # Shared, not deep-copied as pynetdicom does: negotiation only reads the acceptor's
        # contexts, and with every storage class a PACS forwards (NON_CT_OBJECTS) a copy per
        # connection cost about 1.4 MB each, before the request was even read.
        assoc.acceptor.supported_contexts = server.contexts
        assoc.requestor.address_info = self.remote
        for event, handlers in server._handlers.items():
            if event.is_intervention and handlers:
                assoc.bind(event, *handlers)
            elif isinstance(event, evt.NotificationEvent):
                for handler, args in handlers:  # type: ignore[misc]
                    assoc.bind(event, handler, args)
        return assoc


class GuardedServer(ThreadedAssociationServer):
    """``ThreadedAssociationServer`` whose connections go through ``GuardedRequestHandler``."""

    # socketserver's listen backlog is 5: a burst of connections beyond it waits for SYN
    # retransmits (1 s, 3 s, ...) before the accept loop even sees it.
    request_queue_size = 128

    def __init__(
        self,
        ae: AE,
        address: tuple[str, int],
        *,
        evt_handlers: list[Any],
        limits: EdgeLimits,
        admission: Admission,
        may_store: Callable[[Association], bool],
        known_address: Callable[[str], bool],
    ) -> None:
        self.limits = limits
        self.admission = admission
        self.may_store = may_store
        self.known_address = known_address
        super().__init__(
            ae,
            address,
            ae.ae_title,
            ae.supported_contexts,
            None,
            evt_handlers=evt_handlers,
            request_handler=GuardedRequestHandler,
        )


def start_guarded_server(ae: AE, address: tuple[str, int], **kwargs: Any) -> GuardedServer:
    """Listen in a daemon thread, as ``AE.start_server(block=False)`` does."""
    server = GuardedServer(ae, address, **kwargs)
    thread = threading.Thread(
        target=server.serve_forever, name=f"AcceptorServer@{address[1]}", daemon=True
    )
    thread.start()
    ae._servers.append(server)
    return server
