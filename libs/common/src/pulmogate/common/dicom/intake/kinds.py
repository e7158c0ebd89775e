"""Which stored objects are a CT series to analyse, for every way in (C-STORE, upload).

A study holds more than its CT series: scouts, dose reports, key object notes, secondary
captures, structured reports. Only CT images that are not a LOCALIZER make a series.
"""

from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from pulmogate.common.dicom.intake.header import CT_CLASSES, sop_class_of

LOCALIZER = "LOCALIZER"


def is_localizer(ds: Dataset) -> bool:
    """True for a scout: ImageType value 3 (or a later one) is LOCALIZER (PS3.3 C.8.2.1.1.1)."""
    try:
        image_type = ds.get("ImageType")
    except Exception:  # an undecodable ImageType: not a reason to drop the image
        return False
    if image_type is None:
        return False
    if isinstance(image_type, MultiValue | list):
        values = [str(v) for v in image_type]
    else:
        values = str(image_type).split("\\")
    return any(v.strip().upper() == LOCALIZER for v in values[2:])


def class_name(sop_class_uid: str) -> str:
    """A SOP class as a readable name for logs and metrics (its UID when unknown)."""
    uid = UID(str(sop_class_uid))
    return uid.keyword or str(uid)


def not_for_analysis(ds: Dataset) -> str | None:
    """Why a readable object is not a CT image to analyse (another SOP class, a scout), or
    None when it is one (or has no SOP class at all: ``stored_classes`` refuses that)."""
    sop_class = sop_class_of(ds)
    if not sop_class:
        return None
    if sop_class not in CT_CLASSES:
        return f"{class_name(sop_class)} is not a CT image"
    if is_localizer(ds):
        return "a CT localizer (scout)"
    return None
