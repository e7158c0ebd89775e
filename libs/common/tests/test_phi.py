"""Patient data is listed once (pulmogate.common.phi): every such column of the models is on
the list, and the logs drop every key of the list."""

import json
import re

import pytest
import structlog

from pulmogate.common.db.models import Base
from pulmogate.common.logging import configure_logging
from pulmogate.common.phi import PATIENT_FIELD_NAMES, PATIENT_FIELDS, names_patient_data

# Column names that look like patient or study identification, whatever table holds them.
LOOKS_LIKE_PATIENT_DATA = re.compile(
    r"patient|accession|birth|(^|_)sex($|_)|(^|_)age($|_)|physician|issuer|"
    r"study_(date|time|id)($|_)"
)


def _columns() -> list[str]:
    return [
        f"{table.name}.{column.name}"
        for table in Base.metadata.sorted_tables
        for column in table.columns
    ]


def test_every_column_that_looks_like_patient_data_is_on_the_list() -> None:
    looking = [c for c in _columns() if LOOKS_LIKE_PATIENT_DATA.search(c.split(".", 1)[1])]
    assert "series.patient_birth_date" in looking and "series.study_time" in looking
    missing = [c for c in looking if c.split(".", 1)[1] not in PATIENT_FIELD_NAMES]
    assert missing == []


def test_the_series_table_holds_the_patient_fields_the_receiver_records() -> None:
    series = set(Base.metadata.tables["series"].columns.keys())
    stored = PATIENT_FIELD_NAMES & series
    assert stored == {
        "patient_name",
        "patient_name_search",
        "patient_id",
        "patient_birth_date",
        "patient_sex",
        "accession_number",
        "study_date",
        "study_time",
        "study_id",
    }
    assert "study_uid" not in PATIENT_FIELD_NAMES and "series_uid" not in PATIENT_FIELD_NAMES


@pytest.mark.parametrize(
    "key",
    sorted({k for f in PATIENT_FIELDS for k in (f.name, f.keyword, *f.aliases) if k}),
)
def test_every_listed_patient_key_is_dropped_from_the_logs(
    key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json", service="test")
    structlog.get_logger("t").info("stored", job_id=4, **{key: "QX7-SECRET-VALUE"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert any(line.get("job_id") == 4 for line in lines)
    assert "QX7-SECRET-VALUE" not in json.dumps(lines)


def test_keys_that_are_not_patient_data_stay_in_the_logs() -> None:
    for key in ("job_id", "series_uid", "study_uid", "study", "calling_ae", "id", "age_s"):
        assert not names_patient_data(key), key
    for key in ("PatientID", "patientid", "PATIENT_ID", "birth_date", "StudyTime"):
        assert names_patient_data(key), key
