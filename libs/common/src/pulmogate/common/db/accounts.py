"""Accounts and licensing tables: users, sessions, API tokens, login failures, audit, licenses."""

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pulmogate.common.db.models import Base, TZDateTime, utcnow


class Role(StrEnum):
    """What a user may do: admin everything; operator rules, destinations, jobs; viewer reads."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


class User(Base):
    """A person (or a service account) who signs in to the API or the web UI."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(Text, default="")
    role: Mapped[str] = mapped_column(String(16), default=Role.VIEWER)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)


class UserSession(Base):
    """A browser session: the cookie carries a secret, the row its SHA-256 and the CSRF token."""

    __tablename__ = "user_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(TZDateTime())
    user: Mapped[User] = relationship(lazy="joined")


class ApiToken(Base):
    """A bearer token for REST clients; only its SHA-256 is stored, its prefix is shown."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(TZDateTime(), nullable=True)
    user: Mapped[User] = relationship(lazy="joined")


class LoginFailure(Base):
    """One failed sign-in, counted per username and client address for rate limiting."""

    __tablename__ = "login_failures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    client_ip: Mapped[str] = mapped_column(String(45))
    at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow, index=True)


class AuditEntry(Base):
    """Who changed what, when (the username is kept after the user is deleted)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    username: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(200), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow, index=True)


class License(Base):
    """An installed license key: the signed text as given, and the fields it carries."""

    __tablename__ = "licenses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_text: Mapped[str] = mapped_column(Text)
    product: Mapped[str] = mapped_column(String(64))
    licensee: Mapped[str] = mapped_column(String(200))
    issued: Mapped[date] = mapped_column(Date)
    expires: Mapped[date] = mapped_column(Date)
    studies_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    installed_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow, index=True)
    installed_by: Mapped[str] = mapped_column(String(64), default="")
