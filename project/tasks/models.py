"""The record of issued tasks: what was queued, whether it was published, how it ended."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from project import db

# Celery's state names. A record in a finished state is the task's outcome for good.
PENDING, STARTED, RETRY = "PENDING", "STARTED", "RETRY"
SUCCESS, FAILURE, REVOKED = "SUCCESS", "FAILURE", "REVOKED"
FINISHED_STATES = (SUCCESS, FAILURE, REVOKED)
STATES = (PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED)


def utc_now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


class TaskRecord(db.Model):
    """A task this service queued: its outbox entry and its lifecycle, written by the worker.

    Redis holds the live state for the fast path and the long poll; this record holds the
    outcome for good, so a finished task still shows it after its result expired in Redis.
    """

    __tablename__ = "task_records"
    __table_args__ = (
        # The outbox sweeper's query: committed records never published.
        Index(
            "ix_task_records_unpublished",
            "created_at",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        # GET /tasks/?state= and ?name=: newest first within a state or a name, from the index.
        Index("ix_task_records_state_seq", "state", "seq"),
        Index("ix_task_records_name_seq", "name", "seq"),
        # purge_tasks: the records that finished before the retention cutoff.
        Index("ix_task_records_finished_at", "finished_at"),
    )

    # seq orders the records newest first for keyset pagination; id is Celery's task id.
    seq: Mapped[int] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    args: Mapped[Any] = mapped_column(JSON, nullable=False, default=list)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utc_now
    )
    # Null until the broker accepted the task; the outbox sweeper publishes what stays null.
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16), nullable=False, server_default=PENDING)
    result: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    error: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)  # {type, message}
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The name of the API token whose request queued the task (null: no token, or a shell).
    queued_by: Mapped[str | None] = mapped_column(String(64))
    # How many times a worker received the task (retries and redeliveries included).
    deliveries: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # True when name and args are all its publish had (no kwargs, countdown, expiry, links,
    # own queue): only then may a lost task be published again from its record (redelivery).
    republishable: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
