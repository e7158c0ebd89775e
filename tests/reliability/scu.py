"""A modality for the reliability tests: sends a series with pynetdicom and keeps each
instance's C-STORE status, so a test knows exactly which instances were acknowledged."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

SUCCESS = 0x0000


@dataclass
class SendReport:
    """Per instance: the status the gateway answered (None: no answer, the link broke)."""

    statuses: dict[str, int | None] = field(default_factory=dict)

    @property
    def acknowledged(self) -> set[str]:
        return {uid for uid, status in self.statuses.items() if status == SUCCESS}


def responses_only_to_requests(assoc: Association) -> Association:
    """Keep pynetdicom's reactor of a C-STORE SCU from taking the responses for itself.

    pynetdicom 3.0's requestor reactor polls the DIMSE queue between two looks at its pause
    flag; a response that arrives in between (an SCP that answers within a millisecond, a
    sender thread that lost the GIL) is logged "Received unexpected C-STORE service message"
    and dropped, and ``send_c_store`` waits for it until its timeout. A storage SCU serves no
    requests, so its reactor is given none; ``send_c_store`` still reads its answers.
    """
    dimse = assoc.dimse
    blocking_get = dimse.get_msg

    def get_msg(block: bool = False) -> Any:
        return blocking_get(block=True) if block else (None, None)

    dimse.get_msg = get_msg  # type: ignore[method-assign]
    return assoc


def sop_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def send_series(
    port: int,
    files: list[Path],
    *,
    calling: str = "CT_SCANNER",
    after_each: Callable[[int, int | None], bool] | None = None,
    release: bool = True,
) -> SendReport:
    """C-STORE ``files`` over one association. ``after_each(index, status)`` returning True
    stops sending (the test injects its fault there). ``release=False`` aborts instead."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    ae.dimse_timeout = 30
    ae.network_timeout = 10
    report = SendReport()
    assoc = ae.associate("127.0.0.1", port, ae_title="PULMOGATE")
    if not assoc.is_established:
        raise AssertionError("association not established")
    responses_only_to_requests(assoc)
    try:
        for index, path in enumerate(files):
            uid = sop_uid(path)
            status: int | None = None
            if assoc.is_established:
                try:
                    answer = assoc.send_c_store(path)
                    status = int(answer.Status) if "Status" in answer else None
                except (RuntimeError, OSError):
                    status = None
            report.statuses[uid] = status
            if after_each is not None and after_each(index, status):
                break
    finally:
        if assoc.is_established:
            if release:
                assoc.release()
            else:
                assoc.abort()
    return report
