"""What the receiver does with the objects of a study that are not a CT series to analyse.

A PACS forwards whole studies: beside the CT series they hold scouts, dose reports, key
object notes, secondary captures, structured reports and PulmoGate's own results sent back.
Under ``non_ct_objects = discard`` (default) every storage SOP class is accepted at
association, so the forward never fails, and an instance that is not a CT image to analyse
is answered Success without being stored: it makes no series and no job. Counted in
``pulmogate_instances_discarded_total`` and logged once per association (info), never with
attribute values. Under ``reject`` only CT storage is accepted (other contexts are rejected
with reason 0x03, as PulmoGate did before).

Discarded: every non-CT storage SOP class, and CT images whose ImageType says LOCALIZER
(the scout of a study, one or a few images that no analysis is meant for).
"""

from collections import Counter
from collections.abc import Iterable

import structlog
from pydicom.uid import UID, AllTransferSyntaxes
from pynetdicom import AllStoragePresentationContexts

from pulmogate.common.dicom.syntaxes import ACCEPTED_STORAGE_CLASSES

log = structlog.get_logger("pulmogate.receiver")

DISCARD, REJECT = "discard", "reject"
CT_CLASSES = frozenset(str(uid) for uid in ACCEPTED_STORAGE_CLASSES)
OTHER_STORAGE_CLASSES: list[UID] = [
    UID(str(cx.abstract_syntax))
    for cx in AllStoragePresentationContexts
    if cx.abstract_syntax not in CT_CLASSES
]
# Nothing of a discarded object is decoded, so any transfer syntax a peer offers will do.
ANY_TRANSFER_SYNTAX: list[UID] = [UID(uid) for uid in AllTransferSyntaxes]


def is_ct_class(sop_class_uid: str) -> bool:
    """True for the storage classes the receiver keeps (CT and Enhanced CT Image Storage)."""
    return str(sop_class_uid) in CT_CLASSES


class DiscardTally:
    """What one association brought that was not kept, by kind, for its log line."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, kind: str) -> None:
        """One more discarded instance of ``kind``."""
        self.counts[kind] += 1

    def log(self, *, calling_ae: str, peer_ip: str) -> None:
        """One info line for the association (nothing when it discarded nothing)."""
        if self.counts:
            log.info(
                "objects that are not a CT series to analyse were discarded (answered Success)",
                calling_ae=calling_ae,
                peer_ip=peer_ip,
                discarded=sum(self.counts.values()),
                kinds=dict(sorted(self.counts.items())),
            )


def storage_classes(policy: str) -> Iterable[UID]:
    """The non-CT storage classes accepted for C-STORE under ``policy``."""
    return OTHER_STORAGE_CLASSES if policy == DISCARD else []
