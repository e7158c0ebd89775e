"""What identifies a patient, listed once.

Retention blanks every stored field of this list when it purges a job, and the logs drop
every key that names one of them (by field name, DICOM keyword or alias, case and
underscores aside). A column of patient data added to the models belongs here; a test
checks every table's columns against this list.
"""

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class PatientField:
    """One piece of patient data: its name in the database and logs, its DICOM keyword."""

    name: str
    keyword: str = ""
    aliases: tuple[str, ...] = ()


PATIENT_FIELDS = (
    PatientField("patient_name", "PatientName"),
    PatientField("patient_name_search"),  # PatientName folded for search (migration 0009)
    PatientField("patient_id", "PatientID"),
    PatientField("issuer_of_patient_id", "IssuerOfPatientID"),
    PatientField("patient_birth_date", "PatientBirthDate", aliases=("birth_date",)),
    PatientField("patient_sex", "PatientSex"),
    PatientField("patient_age", "PatientAge"),
    PatientField("accession_number", "AccessionNumber"),
    PatientField("study_date", "StudyDate"),
    PatientField("study_time", "StudyTime"),
    PatientField("study_id", "StudyID"),
    PatientField("referring_physician_name", "ReferringPhysicianName"),
)
PATIENT_FIELD_NAMES = frozenset(field.name for field in PATIENT_FIELDS)


def _normalised(key: str) -> str:
    return key.lower().replace("_", "")


PATIENT_LOG_KEYS = frozenset(
    _normalised(key)
    for field in PATIENT_FIELDS
    for key in (field.name, field.keyword, *field.aliases)
    if key
)


def names_patient_data(key: str) -> bool:
    """Whether a log key names patient data (``patient_id``, ``PatientID``, ``patientid``)."""
    return _normalised(key) in PATIENT_LOG_KEYS


def patient_columns(names: Iterable[str]) -> list[str]:
    """The column names among ``names`` that hold patient data, in their given order."""
    return [name for name in names if name in PATIENT_FIELD_NAMES]
