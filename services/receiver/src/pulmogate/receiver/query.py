"""C-FIND over what PulmoGate holds: identifier keys become indexed SQL on its own tables.

What is held: received series (``series``/``instances``) and the result series written for
them (``output_objects``), both hidden once their job is purged by retention. Both are seen
through two UNION views, one row per series and one per instance, whose columns are named by
DICOM keyword, so a key in an identifier is a column to match and a value to return.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydicom import Dataset
from pydicom.multival import MultiValue
from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    and_,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.sql import Subquery

from pulmogate.common.db.models import Instance, Job, OutputObject, Series
from pulmogate.common.db.session import Database
from pulmogate.common.dicom.statuses import STATUS_IDENTIFIER_MISMATCH
from pulmogate.common.text_search import fold


class Level(StrEnum):
    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


LEVEL_ORDER = [Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE]


class Model(StrEnum):
    """The information model of the negotiated SOP class."""

    PATIENT_ROOT = "patient"
    STUDY_ROOT = "study"


class QueryRefused(ValueError):
    """An identifier the SCP cannot answer: a DIMSE failure ``status`` with a readable reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Key:
    """A matchable attribute: the level it belongs to and how its values match."""

    level: Level
    match: str  # "uid" | "text" | "pn" | "date" | "time" | "int"


KEYS: dict[str, Key] = {
    "PatientName": Key(Level.PATIENT, "pn"),
    "PatientID": Key(Level.PATIENT, "text"),
    "PatientBirthDate": Key(Level.PATIENT, "date"),
    "PatientSex": Key(Level.PATIENT, "text"),
    "StudyInstanceUID": Key(Level.STUDY, "uid"),
    "StudyDate": Key(Level.STUDY, "date"),
    "StudyTime": Key(Level.STUDY, "time"),
    "StudyID": Key(Level.STUDY, "text"),
    "AccessionNumber": Key(Level.STUDY, "text"),
    "StudyDescription": Key(Level.STUDY, "text"),
    "SeriesInstanceUID": Key(Level.SERIES, "uid"),
    "Modality": Key(Level.SERIES, "text"),
    "SeriesNumber": Key(Level.SERIES, "int"),
    "SeriesDescription": Key(Level.SERIES, "text"),
    "SOPInstanceUID": Key(Level.IMAGE, "uid"),
    "SOPClassUID": Key(Level.IMAGE, "uid"),
    "InstanceNumber": Key(Level.IMAGE, "int"),
}

# Keys matched on another column of the views than the one returned: person names on
# their folded form (case and accents), whatever character set the query came in.
MATCH_COLUMNS = {"PatientName": "patient_name_search"}
PATIENT_KEYS = [k for k, v in KEYS.items() if v.level == Level.PATIENT]
STUDY_KEYS = [k for k, v in KEYS.items() if v.level == Level.STUDY]
SERIES_KEYS = [k for k, v in KEYS.items() if v.level == Level.SERIES]
UNIQUE_KEY = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}
# Keys computed per match (returned, and ModalitiesInStudy also matched).
COMPUTED_KEYS = frozenset(
    {
        "ModalitiesInStudy",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "NumberOfSeriesRelatedInstances",
    }
)


def _patient_study_columns(series: type[Series]) -> list[Any]:
    return [
        series.patient_name.label("PatientName"),
        series.patient_name_search.label("patient_name_search"),
        series.patient_id.label("PatientID"),
        series.patient_birth_date.label("PatientBirthDate"),
        series.patient_sex.label("PatientSex"),
        series.study_uid.label("StudyInstanceUID"),
        series.study_date.label("StudyDate"),
        series.study_time.label("StudyTime"),
        series.study_id.label("StudyID"),
        series.accession_number.label("AccessionNumber"),
        series.study_description.label("StudyDescription"),
    ]


def _visible() -> ColumnElement[bool]:
    """A series (and its results) is held until retention purges its job."""
    return Job.purged_at.is_(None)


def _outputs_held() -> ColumnElement[bool]:
    """Result objects whose header was indexed and whose file was readable then."""
    return and_(OutputObject.modality.is_not(None), OutputObject.modality != "")


def held_series() -> Subquery:
    """One row per held series: received ones and result ones, columns named by keyword."""
    received = (
        select(
            *_patient_study_columns(Series),
            Series.series_uid.label("SeriesInstanceUID"),
            Series.modality.label("Modality"),
            Series.series_number.label("SeriesNumber"),
            Series.series_description.label("SeriesDescription"),
            Series.instance_count.label("instances"),
        )
        .outerjoin(Job, Job.series_id == Series.id)
        .where(_visible(), Series.instance_count > 0)
    )
    # Grouped by every column it returns, so the planner pushes a query's conditions below
    # the aggregate onto the indexed base tables (a result series has one modality, number
    # and description).
    result_columns = [
        *_patient_study_columns(Series),
        OutputObject.series_uid.label("SeriesInstanceUID"),
        OutputObject.modality.label("Modality"),
        OutputObject.series_number.label("SeriesNumber"),
        OutputObject.series_description.label("SeriesDescription"),
    ]
    results = (
        select(*result_columns, func.count(OutputObject.id).label("instances"))
        .join(Job, OutputObject.job_id == Job.id)
        .join(Series, Job.series_id == Series.id)
        .where(_visible(), _outputs_held())
        .group_by(*(column.element for column in result_columns))
    )
    return union_all(received, results).subquery("held_series")


def studies_with_modality(condition: Callable[[Any], ColumnElement[bool]]) -> CompoundSelect[Any]:
    """Study UIDs holding a received or result series whose Modality meets ``condition``."""
    received = (
        select(Series.study_uid)
        .outerjoin(Job, Job.series_id == Series.id)
        .where(_visible(), Series.instance_count > 0, condition(Series.modality))
    )
    results = (
        select(Series.study_uid)
        .select_from(OutputObject)
        .join(Job, OutputObject.job_id == Job.id)
        .join(Series, Job.series_id == Series.id)
        .where(_visible(), _outputs_held(), condition(OutputObject.modality))
    )
    return union_all(received, results)


def held_instances() -> Subquery:
    """One row per held instance, with its series, study and patient attributes."""
    received = (
        select(
            *_patient_study_columns(Series),
            Series.series_uid.label("SeriesInstanceUID"),
            Series.modality.label("Modality"),
            Series.series_number.label("SeriesNumber"),
            Series.series_description.label("SeriesDescription"),
            Instance.sop_instance_uid.label("SOPInstanceUID"),
            Instance.sop_class_uid.label("SOPClassUID"),
            Instance.instance_number.label("InstanceNumber"),
            Instance.transfer_syntax_uid.label("transfer_syntax"),
            Instance.path.label("path"),
        )
        .join(Series, Instance.series_id == Series.id)
        .outerjoin(Job, Job.series_id == Series.id)
        .where(_visible())
    )
    results = (
        select(
            *_patient_study_columns(Series),
            OutputObject.series_uid.label("SeriesInstanceUID"),
            OutputObject.modality.label("Modality"),
            OutputObject.series_number.label("SeriesNumber"),
            OutputObject.series_description.label("SeriesDescription"),
            OutputObject.sop_instance_uid.label("SOPInstanceUID"),
            OutputObject.sop_class_uid.label("SOPClassUID"),
            OutputObject.instance_number.label("InstanceNumber"),
            null().label("transfer_syntax"),
            OutputObject.path.label("path"),
        )
        .join(Job, OutputObject.job_id == Job.id)
        .join(Series, Job.series_id == Series.id)
        .where(_visible(), _outputs_held())
    )
    return union_all(received, results).subquery("held_instances")


# --- matching -------------------------------------------------------------------------------

LIKE_ESCAPE = "!"


def _values(value: Any) -> list[str]:
    """The match values of an element: a backslash-separated list, padding removed."""
    if value is None:
        return []
    items = list(value) if isinstance(value, list | tuple | MultiValue) else str(value).split("\\")
    stripped = (str(v).strip().rstrip("\0").strip() for v in items)
    return [v for v in stripped if v]


def _like_pattern(value: str) -> str:
    escaped = (
        value.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )
    return escaped.replace("*", "%").replace("?", "_")


def _text_match(column: Any, value: str) -> ColumnElement[bool]:
    """Exact, or wildcard (``*``, ``?``) matching of a text value."""
    if "*" in value or "?" in value:
        if value.strip("*") == "":
            return literal(True)
        return column.like(_like_pattern(value), escape=LIKE_ESCAPE)
    return column == value


TIME_CEILING = "235959.999999"


def _range_match(column: Any, value: str, *, time: bool) -> ColumnElement[bool]:
    """DA/TM matching: a single value, ``a-``, ``-b`` or ``a-b`` (stored as sortable text)."""
    value = value.replace(":", "") if time else value.replace(".", "")
    if "-" not in value:
        if time:
            return and_(column >= value, column <= value + TIME_CEILING[len(value) :])
        return column == value
    low, high = (part.strip() for part in value.split("-", 1))
    conditions: list[ColumnElement[bool]] = [column != ""]
    if low:
        conditions.append(column >= low)
    if high:
        conditions.append(column <= (high + TIME_CEILING[len(high) :] if time else high))
    return and_(*conditions)


def _key_match(column: Any, key: Key, values: list[str]) -> ColumnElement[bool]:
    if key.match == "uid":
        return column.in_(values) if len(values) > 1 else column == values[0]
    alternatives: list[ColumnElement[bool]] = []
    for value in values:
        if key.match == "int":
            try:
                alternatives.append(column == int(value))
            except ValueError:
                alternatives.append(literal(False))
        elif key.match in ("date", "time"):
            alternatives.append(_range_match(column, value, time=key.match == "time"))
        elif key.match == "pn":  # against the folded column: case- and accent-insensitive
            alternatives.append(_text_match(column, fold(value)))
        else:
            alternatives.append(_text_match(column, value))
    return alternatives[0] if len(alternatives) == 1 else or_(*alternatives)


@dataclass
class Query:
    """A parsed C-FIND/C-MOVE/C-GET identifier."""

    model: Model
    level: Level
    identifier: Dataset
    conditions: dict[str, list[str]] = field(default_factory=dict)
    modalities_in_study: list[str] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return LEVEL_ORDER.index(self.level)

    def where(self, view: Subquery, *, up_to: Level | None = None) -> list[ColumnElement[bool]]:
        """SQL conditions for the keys of this level and the levels above (or ``up_to``)."""
        limit = LEVEL_ORDER.index(up_to or self.level)
        clauses = [
            _key_match(view.c[MATCH_COLUMNS.get(keyword, keyword)], KEYS[keyword], values)
            for keyword, values in self.conditions.items()
            if LEVEL_ORDER.index(KEYS[keyword].level) <= limit
        ]
        if self.modalities_in_study:
            wanted = self.modalities_in_study
            clauses.append(
                view.c.StudyInstanceUID.in_(
                    studies_with_modality(
                        lambda column: _key_match(column, KEYS["Modality"], wanted)
                    )
                )
            )
        return clauses


def parse_identifier(identifier: Dataset, model: Model) -> Query:
    """Read the level and the keys with a value to match; refuse what the model cannot have."""
    level_text = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    try:
        level = Level(level_text)
    except ValueError as exc:
        raise QueryRefused(
            STATUS_IDENTIFIER_MISMATCH, f"QueryRetrieveLevel {level_text!r} is not supported"
        ) from exc
    if model == Model.STUDY_ROOT and level == Level.PATIENT:
        raise QueryRefused(STATUS_IDENTIFIER_MISMATCH, "Study Root has no PATIENT level")
    query = Query(model=model, level=level, identifier=identifier)
    for element in identifier:
        keyword = element.keyword
        if keyword in KEYS and LEVEL_ORDER.index(KEYS[keyword].level) <= query.depth:
            values = _values(element.value)
            if values and not all(v.strip("*") == "" for v in values):
                query.conditions[keyword] = values
    if query.level == Level.STUDY:
        values = _values(identifier.get("ModalitiesInStudy"))
        if values and not all(v.strip("*") == "" for v in values):
            query.modalities_in_study = values
    return query


# --- running --------------------------------------------------------------------------------


@dataclass
class Match:
    """One C-FIND match: the values of the keys this SCP knows."""

    values: dict[str, Any]


def _row_values(row: Any, keywords: Iterable[str]) -> dict[str, Any]:
    mapping = row._mapping
    return {k: mapping[k] for k in keywords if k in mapping}


async def find(db: Database, query: Query) -> list[Match]:
    """Run a C-FIND at the query's level."""
    async with db.session() as session:
        if query.level == Level.PATIENT:
            return await _find_patients(session, query)
        if query.level == Level.STUDY:
            return await _find_studies(session, query)
        if query.level == Level.SERIES:
            return await _find_series(session, query)
        return await _find_instances(session, query)


async def _find_patients(session: Any, query: Query) -> list[Match]:
    view = held_series()
    stmt = (
        select(
            view.c.PatientID,
            *(func.min(view.c[k]).label(k) for k in PATIENT_KEYS if k != "PatientID"),
            func.count(func.distinct(view.c.StudyInstanceUID)).label(
                "NumberOfPatientRelatedStudies"
            ),
            func.count().label("NumberOfPatientRelatedSeries"),
            func.sum(view.c.instances).label("NumberOfPatientRelatedInstances"),
        )
        .where(*query.where(view))
        .group_by(view.c.PatientID)
        .order_by(view.c.PatientID)
    )
    rows = (await session.execute(stmt)).all()
    return [Match(dict(row._mapping)) for row in rows]


async def _find_studies(session: Any, query: Query) -> list[Match]:
    view = held_series()
    attributes = [k for k in PATIENT_KEYS + STUDY_KEYS if k != "StudyInstanceUID"]
    stmt = (
        select(
            view.c.StudyInstanceUID,
            view.c.Modality,
            *(func.min(view.c[k]).label(k) for k in attributes),
            func.count().label("series"),
            func.sum(view.c.instances).label("instances"),
        )
        .where(*query.where(view))
        .group_by(view.c.StudyInstanceUID, view.c.Modality)
        .order_by(view.c.StudyInstanceUID)
    )
    studies: dict[str, dict[str, Any]] = {}
    modalities: dict[str, list[str]] = {}
    for row in (await session.execute(stmt)).all():
        uid = row.StudyInstanceUID
        study = studies.get(uid)
        if study is None:
            study = studies[uid] = _row_values(row, ["StudyInstanceUID", *attributes])
            study["NumberOfStudyRelatedSeries"] = 0
            study["NumberOfStudyRelatedInstances"] = 0
            modalities[uid] = []
        study["NumberOfStudyRelatedSeries"] += int(row.series)
        study["NumberOfStudyRelatedInstances"] += int(row.instances or 0)
        if row.Modality:
            modalities[uid].append(row.Modality)
    for uid, study in studies.items():
        study["ModalitiesInStudy"] = sorted(set(modalities[uid]))
    return [Match(study) for study in studies.values()]


async def _find_series(session: Any, query: Query) -> list[Match]:
    view = held_series()
    stmt = (
        select(view, view.c.instances.label("NumberOfSeriesRelatedInstances"))
        .where(*query.where(view))
        .order_by(view.c.StudyInstanceUID, view.c.SeriesNumber, view.c.SeriesInstanceUID)
    )
    rows = (await session.execute(stmt)).all()
    return [Match(dict(row._mapping)) for row in rows]


async def _find_instances(session: Any, query: Query) -> list[Match]:
    view = held_instances()
    stmt = (
        select(view)
        .where(*query.where(view))
        .order_by(view.c.SeriesInstanceUID, view.c.InstanceNumber, view.c.SOPInstanceUID)
    )
    rows = (await session.execute(stmt)).all()
    return [Match(dict(row._mapping)) for row in rows]


@dataclass(frozen=True)
class HeldInstance:
    """An instance a C-MOVE/C-GET sends: where its file is and how it is encoded."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str | None
    path: str


def retrieve_statement(query: Query) -> Select[Any]:
    """The instances under the matched entities (a retrieve at any level sends instances)."""
    view = held_instances()
    return (
        select(view.c.SOPInstanceUID, view.c.SOPClassUID, view.c.transfer_syntax, view.c.path)
        .where(*query.where(view))
        .order_by(view.c.SeriesInstanceUID, view.c.InstanceNumber, view.c.SOPInstanceUID)
    )


async def instances_to_retrieve(db: Database, query: Query) -> list[HeldInstance]:
    """Every held instance a retrieve identifier selects."""
    if not query.conditions and not query.modalities_in_study:
        raise QueryRefused(
            STATUS_IDENTIFIER_MISMATCH, f"a retrieve needs a {UNIQUE_KEY[query.level]} value"
        )
    async with db.session() as session:
        rows = (await session.execute(retrieve_statement(query))).all()
    return [HeldInstance(r[0], r[1], r[2], r[3]) for r in rows]


# --- responses ------------------------------------------------------------------------------


def _dicom_value(keyword: str, value: Any) -> Any:
    if value is None:
        return ""
    if keyword == "ModalitiesInStudy":
        return list(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def response(
    query: Query, match: Match, *, retrieve_ae: str, charset: str = "ISO_IR 192"
) -> Dataset:
    """The identifier returned for one match: each requested key, filled where known."""
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    for element in query.identifier:
        keyword = element.keyword
        if keyword in ("SpecificCharacterSet", "QueryRetrieveLevel"):
            continue
        if keyword == "RetrieveAETitle":
            ds.RetrieveAETitle = retrieve_ae
            continue
        if keyword in match.values:
            value = _dicom_value(keyword, match.values[keyword])
            ds.add_new(element.tag, element.VR, value if value != [] else None)
        elif element.VR == "SQ":
            ds.add_new(element.tag, "SQ", [])
        else:
            ds.add_new(element.tag, element.VR, None)
    ds.QueryRetrieveLevel = query.level.value
    for level in LEVEL_ORDER[: query.depth + 1]:
        unique = UNIQUE_KEY[level]
        if level == Level.PATIENT and query.model == Model.STUDY_ROOT:
            continue
        if unique not in ds and unique in match.values:
            setattr(ds, unique, match.values[unique] or "")
    return ds
