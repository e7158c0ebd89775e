"""The indexed values of an instance: the shared values remembered from the previous instance
are the values a fresh conversion gives, whatever changed between the two."""

import threading
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.uid import CTImageStorage, generate_uid

from pulmogate.common.dicom.intake import values as values_module
from pulmogate.common.dicom.intake.header import read_header
from pulmogate.common.dicom.intake.values import SHARED_KEYWORDS, instance_values
from pulmogate.common.storage import dataset_bytes
from tests.fixtures.datasets import dicom_object, set_grey_pixels

STUDY, SERIES = generate_uid(), generate_uid()


def encoded(**attributes: object) -> bytes:
    """A small CT instance of one series, with ``attributes`` set on top."""
    ds = dicom_object(CTImageStorage, study_uid=STUDY, series_uid=SERIES, modality="CT")
    ds.SeriesDescription = "Chest 1.0"
    ds.SeriesNumber = 3
    ds.InstanceNumber = 1
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 1.25
    set_grey_pixels(ds, np.zeros((4, 4), dtype=np.uint16))
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return dataset_bytes(ds)


def values_of(data: bytes) -> values_module.InstanceValues:
    return instance_values(
        read_header(data),
        sop_class_uid=CTImageStorage,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        path=Path("/x.dcm"),
        size_bytes=len(data),
    )


def fresh(data: bytes) -> values_module.InstanceValues:
    """The values with nothing remembered in this thread."""
    values_module._last_run.values = None
    return values_of(data)


LATIN1_NAME = "Müller^Jörg".encode("latin-1")

# Each a run of instances, one after the other; each differs from the previous in something
# the shared values come from, or in nothing but its own number.
RUNS = {
    "only the instance number": [{"InstanceNumber": 1}, {"InstanceNumber": 2}],
    "series description": [{}, {"SeriesDescription": "Chest 2.0"}, {}],
    "slice thickness and spacing": [{}, {"SliceThickness": 2.5, "PixelSpacing": [0.8, 0.8]}],
    "series number gone": [{}, {"SeriesNumber": None}],
    "the same bytes in another character set": [
        {"SpecificCharacterSet": "ISO_IR 100", "PatientName": LATIN1_NAME},
        {"SpecificCharacterSet": "ISO_IR 192", "PatientName": LATIN1_NAME},
        {"SpecificCharacterSet": "ISO_IR 100", "PatientName": LATIN1_NAME},
    ],
    "a patient name with a NUL": [{}, {"PatientName": "A\x00B"}],
}


@pytest.mark.parametrize("run", RUNS.values(), ids=RUNS.keys())
def test_remembered_values_are_fresh_values(run: list[dict[str, object]]) -> None:
    instances = [encoded(**attributes) for attributes in run]
    expected = [fresh(data) for data in instances]
    values_module._last_run.values = None
    assert [values_of(data) for data in instances] == expected


def test_character_set_decides_the_text() -> None:
    latin1 = encoded(SpecificCharacterSet="ISO_IR 100", PatientName=LATIN1_NAME)
    utf8 = encoded(SpecificCharacterSet="ISO_IR 192", PatientName="Müller^Jörg")
    values_module._last_run.values = None
    assert values_of(latin1).patient_name == "Müller^Jörg"
    assert values_of(utf8).patient_name == "Müller^Jörg"
    assert values_of(latin1).patient_name == "Müller^Jörg"


def test_an_instance_like_the_previous_is_not_converted_again() -> None:
    """The second instance's shared elements stay encoded: nothing was converted."""
    values_module._last_run.values = None
    values_of(encoded(InstanceNumber=1))
    second = read_header(encoded(InstanceNumber=2))
    instance_values(
        second,
        sop_class_uid=CTImageStorage,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        path=Path("/x.dcm"),
        size_bytes=1,
    )
    raw = [k for k in SHARED_KEYWORDS if isinstance(second.get_item(k), RawDataElement)]
    assert set(raw) >= {"SeriesDescription", "PatientName", "PixelSpacing", "SliceThickness"}


def test_threads_remember_their_own_run() -> None:
    first, other = encoded(), encoded(SeriesDescription="Lung window")
    values_module._last_run.values = None
    values_of(first)
    seen: list[str] = []
    thread = threading.Thread(target=lambda: seen.append(values_of(other).series_description))
    thread.start()
    thread.join()
    assert seen == ["Lung window"]
    assert values_of(first).series_description == "Chest 1.0"
