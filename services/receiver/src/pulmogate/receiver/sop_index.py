"""Where a SOP Instance UID is already stored: the one question a C-STORE must have answered
by the database before its success.

On Postgres the question goes to the service's event loop as soon as the header is read and
is answered while the file is written and fsynced, on one asyncpg connection of its own with
a prepared statement, one question at a time (each takes about 0.1 ms of the loop; through
SQLAlchemy's session the same query took the loop about ten times the CPU, through an asyncpg
pool twice, and every millisecond the loop holds the GIL is one the association thread may
wait for when its fsync returns). A connection that fails is dropped; the next question
opens another. On the embedded SQLite file it is asked in
the association thread itself, after the write, on a read-only connection of that thread (a
few tens of microseconds; no hop to the loop and to aiosqlite's thread and back, each of
which waits for a CPU on a busy two-core machine).
"""

import asyncio
import sqlite3
import threading
from collections.abc import Callable

import asyncpg
from sqlalchemy.engine import make_url

from pulmogate.common.db.session import Database

Answer = Callable[[], str | None]
QUERY = (
    "SELECT s.series_uid FROM instances i JOIN series s ON s.id = i.series_id "
    "WHERE i.sop_instance_uid = {}"
)


class StoredSopIndex:
    """Asks the database which series holds a SOP Instance UID."""

    def __init__(self, db: Database, loop: asyncio.AbstractEventLoop, wait_s: float) -> None:
        self.db = db
        self.loop = loop
        self.wait_s = wait_s
        url = make_url(db.url)
        database = url.database if db.is_sqlite else None
        self.sqlite_file = database if database and database != ":memory:" else None
        self.dsn = (
            None
            if db.is_sqlite
            else url.set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self._local = threading.local()
        self._connection: asyncpg.Connection | None = None
        self._one_at_a_time = asyncio.Lock()

    def ask(self, sop_uid: str) -> Answer:
        """Start the question; the returned callable blocks for (and returns) the answer."""
        if self.sqlite_file is not None:
            return lambda: self._sqlite_answer(sop_uid)
        future = asyncio.run_coroutine_threadsafe(self._postgres_answer(sop_uid), self.loop)
        return lambda: future.result(timeout=self.wait_s)

    async def _postgres_answer(self, sop_uid: str) -> str | None:
        async with self._one_at_a_time:
            if self._connection is None or self._connection.is_closed():
                self._connection = await asyncpg.connect(self.dsn, command_timeout=self.wait_s)
            try:
                value = await self._connection.fetchval(QUERY.format("$1"), sop_uid)
            except BaseException:  # cancelled too: the connection may be mid-message
                self._connection.terminate()
                self._connection = None
                raise
        return None if value is None else str(value)

    async def close(self) -> None:
        """Close the Postgres connection (on the loop, when the service stops)."""
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    def _sqlite_answer(self, sop_uid: str) -> str | None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                f"file:{self.sqlite_file}?mode=ro",
                uri=True,
                timeout=self.wait_s,
                isolation_level=None,
                check_same_thread=True,
            )
            self._local.conn = conn
        # fetchall: the statement runs to its end, so this connection holds no read snapshot
        # (SQLite has five WAL read marks; snapshots left open by twenty threads block readers).
        rows = conn.execute(QUERY.format("?"), (sop_uid,)).fetchall()
        return str(rows[0][0]) if rows else None

    def close_thread(self) -> None:
        """Close this thread's connection (its association ended)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
