"""The DIMSE status codes PulmoGate answers and reads (PS3.4 annex B and C, PS3.7 annex C).

pynetdicom's named statuses where it has them; the others by their value in the standard.
"""

from pynetdicom.status import Status

STATUS_SUCCESS = Status.SUCCESS  # 0x0000
STATUS_PENDING = Status.PENDING  # 0xFF00: a C-FIND match or C-GET/C-MOVE sub-operation
STATUS_CANCEL = Status.CANCEL  # 0xFE00: the peer cancelled the C-FIND/C-GET/C-MOVE

# Failures common to the DIMSE services (PS3.7 annex C).
STATUS_PROCESSING_FAILURE = 0x0110
STATUS_NOT_AUTHORIZED = 0x0124  # the calling peer is not named by any enabled rule

# Storage (PS3.4 B.2.3).
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC210
# Warnings a C-STORE SCP may answer for an object it did store: coercion of data elements,
# elements discarded, data set does not match the SOP class.
STORE_WARNING_STATUSES = frozenset({0xB000, 0xB007, 0xB006})

# Query/retrieve (PS3.4 C.4).
STATUS_IDENTIFIER_MISMATCH = 0xA900
STATUS_UNABLE_TO_PROCESS = 0xC000
