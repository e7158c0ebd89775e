"""Alembic migrations, run programmatically (``pulmogate db upgrade``)."""

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at our bundled migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database schema to ``revision`` (default: every branch head)."""
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str) -> None:
    """Run the upgrade off the event loop (Alembic's env.py runs its own loop)."""
    await asyncio.to_thread(upgrade, url)
