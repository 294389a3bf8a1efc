"""Queue a task after the transaction commits, and publish what a crash left unpublished.

`enqueue_on_commit` writes the task's record in the caller's transaction, so the record
exists exactly when the caller's data does. The task is published only once that
transaction commits; a rollback discards it. If the process dies between the commit
and the publish, or the broker is down then, the record stays unpublished
(`published_at` null) and every worker's outbox sweeper publishes it a little later.
"""

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from celery import Task
from flask import current_app, g
from sqlalchemy import Connection, Row, bindparam, event, select, update
from sqlalchemy.orm import Session

from project import db
from project.database import DriverStatement, bookkeeping_engine
from project.tasks.models import PENDING, TaskRecord, utc_now
from project.tasks.records import RECORD, recorded_by_caller

log = logging.getLogger(__name__)

# Where a session keeps the tasks to publish once its transaction commits.
_TO_PUBLISH = "tasks_to_publish"
SWEEP_BATCH = 100
# Built once, on the table: they run for every task queued.
_records = TaskRecord.__table__
_mark_published = update(_records).values(published_at=bindparam("now"))
_unpublished = _records.c.published_at.is_(None)
# The sweepers' mark, on records their transaction locked: no one else marks those meanwhile.
MARK_PUBLISHED = _mark_published.where(_records.c.id.in_(bindparam("ids", expanding=True)))
# The web's mark after each publish: driver SQL, as the worker's claim (see DriverStatement).
MARK_ONE_PUBLISHED = DriverStatement(
    _mark_published.where(_records.c.id == bindparam("task_id"), _unpublished)
)


def enqueue_on_commit(task: Task, *args: Any) -> str:
    """Record `task(*args)` in the current transaction; publish it once that commits.

    Returns the task id. Nothing is published if the transaction rolls back.
    """
    task_id = str(uuid.uuid4())
    row = {
        "id": task_id,
        "name": task.name,
        "args": list(args),
        "created_at": utc_now(),
        "queued_by": g.get("api_token_name"),  # set by project/auth for this request
        "republishable": True,  # name and args are all publish() sends
    }
    db.session.execute(RECORD, row)
    db.session.info.setdefault(_TO_PUBLISH, []).append((task.name, task_id, args))
    return task_id


def publish(name: str, task_id: str, args: Any) -> None:
    """Publish a recorded task through this Flask app's Celery, without recording it again."""
    celery = current_app.extensions["celery"]
    task = celery.tasks.get(name)
    with recorded_by_caller():
        if task is None:  # defined in another code base: route it by name
            celery.send_task(name, args, task_id=task_id)
        else:
            task.apply_async(args, task_id=task_id)


def mark_published(task_ids: list[str]) -> None:
    """Note that the broker accepted these tasks, so the sweeper leaves them alone."""
    engine, now = bookkeeping_engine(), utc_now()
    for task_id in task_ids:  # one per request, as a rule
        MARK_ONE_PUBLISHED.run(engine, {"task_id": task_id, "now": now})


@event.listens_for(Session, "after_commit")
def _publish_committed(session: Session) -> None:
    pending = session.info.pop(_TO_PUBLISH, None)
    if not pending:
        return
    published = []
    for name, task_id, args in pending:
        try:
            publish(name, task_id, args)
        except Exception as error:  # the broker is down: the sweeper publishes it later
            log.warning("task %s kept in the outbox, not published yet: %s", task_id, error)
        else:
            published.append(task_id)
    if published:
        try:
            mark_published(published)
        except Exception as error:  # published twice at worst; the worker runs it once
            log.warning("could not mark %d task(s) published: %s", len(published), error)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_TO_PUBLISH, None)


def publish_locked(connection: Connection, rows: Sequence[Row]) -> None:
    """Publish the tasks of records the caller's transaction locked; mark them published now."""
    for task_id, name, args in rows:
        publish(name, task_id, args)
    if rows:
        connection.execute(MARK_PUBLISHED, {"ids": [row.id for row in rows], "now": utc_now()})


def publish_stranded(older_than_seconds: float, limit: int = SWEEP_BATCH) -> int:
    """Publish committed records never published (crash or broker outage); return how many.

    Rows are locked with SKIP LOCKED, so sweepers in several workers never publish one
    record twice at the same time.
    """
    cutoff = utc_now() - timedelta(seconds=older_than_seconds)
    with db.engine.begin() as connection:
        rows = connection.execute(
            select(TaskRecord.id, TaskRecord.name, TaskRecord.args)
            .where(
                TaskRecord.published_at.is_(None),
                TaskRecord.created_at < cutoff,
                TaskRecord.state == PENDING,
            )
            .order_by(TaskRecord.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        publish_locked(connection, rows)
    if rows:
        log.info("outbox: published %d task(s) left unpublished", len(rows))
    return len(rows)
