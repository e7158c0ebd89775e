"""Database: ORM models, sessions and migrations (Postgres or embedded SQLite)."""
