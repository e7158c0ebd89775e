"""Transfer syntaxes and SOP classes PulmoGate accepts and offers."""

from pydicom.uid import (
    JPEG2000,
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pydicom.uid import JPEGLossless as JPEGLosslessP14

UNCOMPRESSED = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]

ACCEPTED_TRANSFER_SYNTAXES: list[UID] = [
    *UNCOMPRESSED,
    DeflatedExplicitVRLittleEndian,
    JPEGLosslessSV1,
    JPEGLosslessP14,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]

ACCEPTED_STORAGE_CLASSES: list[UID] = [CTImageStorage, EnhancedCTImageStorage]
