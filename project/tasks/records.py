"""Keep a record of every task published, however it was queued."""

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

from celery import Task, signals
from celery import current_app as current_celery_app
from flask import has_app_context
from sqlalchemy import delete, insert, text
from sqlalchemy.exc import IntegrityError

from project import db
from project.tasks.models import TaskRecord

# Set while the API publishes a task it has already recorded in its own transaction.
_recorded_by_caller: ContextVar[bool] = ContextVar("task_recorded_by_caller", default=False)


@contextmanager
def recorded_by_caller() -> Iterator[None]:
    """Publish inside this block without a second record: the caller committed one."""
    token = _recorded_by_caller.set(True)
    try:
        yield
    finally:
        _recorded_by_caller.reset(token)


# One statement in autocommit mode, so one round trip: the CTE turns synchronous_commit
# off for this statement's own transaction only.
POSTGRES_RECORD = text(
    "WITH fast AS (SELECT set_config('synchronous_commit', 'off', true)) "
    "INSERT INTO task_records (id, name, args, created_at) "
    "SELECT :id, :name, CAST(:args AS json), now() FROM fast"
)


def record_task(task_id: str, name: str, args: list[Any]) -> None:
    """Insert a task's record in a transaction of its own (needs an app context).

    On PostgreSQL the commit does not wait for the disk (synchronous_commit off): a crash
    of the database can forget the last fraction of a second of records (the tasks
    themselves are in Redis), and each publish is spared a WAL flush and the round trips
    of BEGIN and COMMIT.
    """
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
            autocommit.execute(
                POSTGRES_RECORD, {"id": task_id, "name": name, "args": json.dumps(args)}
            )
        else:
            connection.execute(insert(TaskRecord).values(id=task_id, name=name, args=args))
            connection.commit()


def record_published_task(headers: dict[str, Any], body: Any, **_: Any) -> None:
    """Record a task as it is published, however it was queued (`divide.delay` in `flask shell`).

    Skipped for retries (the first publish recorded them) and for Celery's own tasks.
    """
    name = headers.get("task", "")
    if _recorded_by_caller.get() or name.startswith("celery.") or headers.get("retries"):
        return
    args = list(body[0]) if isinstance(body, list | tuple) and body else []
    flask_app = getattr(current_celery_app, "flask_app", None)
    context = nullcontext() if has_app_context() or flask_app is None else flask_app.app_context()
    with context:
        try:
            # Its own transaction: never commits or rolls back the publisher's session.
            record_task(headers["id"], name, args)
        except IntegrityError:
            pass  # the same id published twice (apply_async(task_id=...)) is recorded once


def connect_task_recording() -> None:
    """Record every task published from this process (idempotent)."""
    signals.before_task_publish.connect(
        record_published_task, weak=False, dispatch_uid="project.record_published_task"
    )


def forget_task(task_id: str) -> None:
    """Delete a task's record (the publish it was made for failed)."""
    with db.engine.begin() as connection:
        connection.execute(delete(TaskRecord).where(TaskRecord.id == task_id))


def enqueue(task: Task, *args: Any) -> str:
    """Record and queue `task(*args)`; return its id. Nothing is left behind if queueing fails.

    The record comes first, so a worker never runs a task the API cannot show; a publish
    that fails (broker down) deletes it again and re-raises (the API answers 503).
    """
    task_id = str(uuid.uuid4())
    record_task(task_id, task.name, list(args))
    try:
        with recorded_by_caller():
            task.apply_async(args, task_id=task_id)
    except Exception:
        forget_task(task_id)
        raise
    return task_id
