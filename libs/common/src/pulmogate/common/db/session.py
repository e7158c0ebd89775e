"""Async engine and sessions for Postgres (asyncpg) or SQLite (aiosqlite)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from pulmogate.common.db import text_guard


def make_engine(url: str) -> AsyncEngine:
    """Engine tuned for the backend: WAL and busy timeout on SQLite, pre-ping on Postgres."""
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        text_guard.install(engine.sync_engine)
        return engine
    engine = create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    text_guard.install(engine.sync_engine)
    return engine


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        """Embedded mode."""
        return self.url.startswith("sqlite")

    def lock(self, model: type) -> dict[str, object] | None:
        """``with_for_update`` for one row of ``model``: FOR UPDATE OF its own table on Postgres
        (eager joins refuse a plain FOR UPDATE), nothing on SQLite (writers are serialised)."""
        return None if self.is_sqlite else {"of": model}

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session that commits on success and rolls back on error."""
        async with self.sessions() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        """Close pooled connections."""
        await self.engine.dispose()
