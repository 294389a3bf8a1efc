"""The record of issued tasks."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from project import db


def _now() -> datetime:
    return datetime.now(UTC)


class TaskRecord(db.Model):
    """A task this service published; Celery's result backend holds its state."""

    __tablename__ = "task_records"

    # seq orders the records newest first for keyset pagination; id is Celery's task id.
    seq: Mapped[int] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    args: Mapped[Any] = mapped_column(JSON, nullable=False, default=list)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now
    )
