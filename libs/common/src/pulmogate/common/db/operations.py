"""Operations tables: manual uploads (which rule routes them) and service heartbeats."""

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pulmogate.common.db.models import Base, TZDateTime, utcnow


class Upload(Base):
    """A series that arrived through the API, not over DICOM; ``rule_id`` forces its rule."""

    __tablename__ = "uploads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(
        ForeignKey("series.id", ondelete="CASCADE"), unique=True, index=True
    )
    rule_id: Mapped[int | None] = mapped_column(
        ForeignKey("routing_rules.id", ondelete="SET NULL"), nullable=True
    )
    uploaded_by: Mapped[str] = mapped_column(String(100), default="")
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)


class ServiceHeartbeat(Base):
    """The last sign of life of a service process (the status page shows who is up)."""

    __tablename__ = "service_heartbeats"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str] = mapped_column(String(500), default="")
    started_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(TZDateTime(), default=utcnow)
