"""No attribute value reaches a log or a warning through pydicom or highdicom."""

import logging
import warnings
from io import BytesIO

import pytest
from pydicom import Dataset, config, dcmread

from pulmogate.common.dicom.quiet import keep_values_out_of_logs


def _invalid_file() -> bytes:
    ds = Dataset()
    with config.disable_value_validation():
        ds.PatientBirthDate = "PHIBDAY"
        ds.PatientName = "DOE^PHINAME^^^\\ALIAS"
    out = BytesIO()
    with config.disable_value_validation():
        ds.save_as(out, implicit_vr=False, little_endian=True)
    return out.getvalue()


def test_invalid_values_read_and_written_are_not_quoted(caplog: pytest.LogCaptureFixture) -> None:
    encoded = _invalid_file()
    keep_values_out_of_logs()
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read = dcmread(BytesIO(encoded), force=True)
        assert str(read.PatientBirthDate) == "PHIBDAY"
        written = Dataset()
        written.PatientBirthDate = "19560230x"
        written.StudyTime = "PHITIME"
        logging.getLogger("highdicom.base").warning('patient name "PHINAME" is odd')
    said = caplog.text + "".join(str(w.message) for w in caught)
    assert "PHI" not in said and "19560230" not in said
