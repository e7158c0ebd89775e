"""A NUL character in any text is stripped before it reaches the database, on both backends."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, update

from pulmogate.common.db.accounts import AuditEntry
from pulmogate.common.db.models import Instance, Series
from pulmogate.common.db.session import Database
from pulmogate.common.db.text_guard import strip_nul
from tests.fixtures.infra import clear_tables


@pytest.fixture(params=["sqlite", "postgres"])
async def db(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path
) -> AsyncIterator[Database]:
    """A migrated, emptied database of each kind."""
    from pulmogate.common.db.migrate import upgrade_async

    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'nul.db'}"
        await upgrade_async(url)
    else:
        url = pg_url
    database = Database(url)
    await clear_tables(database)
    yield database
    await database.dispose()


def test_strip_nul_touches_only_strings_with_nul() -> None:
    row = ("a\x00b", b"\x00bytes", 3, None)
    assert strip_nul(row, False) == ("ab", b"\x00bytes", 3, None)
    assert strip_nul({"k": "x\x00"}, False) == {"k": "x"}
    assert strip_nul([("\x00",), ("ok",)], True) == [("",), ("ok",)]
    clean = ("nothing", 1)
    assert strip_nul(clean, False) is clean


async def test_orm_core_and_bulk_writes_store_the_same_text_on_sqlite_and_postgres(
    db: Database,
) -> None:
    async with db.session() as session:
        series = Series(
            series_uid="1.2.3",
            study_uid="1.2",
            study_description="CHEST\x00CT",
            series_description="\x00AXIAL",
            patient_name="DOE\x00JANE",
        )
        session.add(series)
        await session.flush()
        await session.execute(
            insert(Instance),
            [
                {
                    "series_id": series.id,
                    "sop_instance_uid": f"1.2.3.{n}",
                    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
                    "transfer_syntax_uid": "1.2.840.10008.1.2.1",
                    "path": f"/x/{n}\x00.dcm",
                }
                for n in range(5)
            ],
        )
        session.add(AuditEntry(username="u\x00", action="test", details={"k": "v"}))
    async with db.session() as session:
        await session.execute(
            update(Series).where(Series.series_uid == "1.2.3\x00").values(modality="C\x00T")
        )
        found = await session.scalar(
            select(func.count())
            .select_from(Series)
            .where(Series.study_description.ilike("%chest\x00ct%"))
        )
        stored = await session.scalar(select(Series))
        paths = sorted(await session.scalars(select(Instance.path)))
        who = await session.scalar(select(AuditEntry.username))

    assert stored is not None
    assert (stored.study_description, stored.series_description) == ("CHESTCT", "AXIAL")
    assert stored.patient_name == "DOEJANE" and stored.modality == "CT"
    assert found == 1
    assert paths == [f"/x/{n}.dcm" for n in range(5)]
    assert who == "u"
