"""Periodic work of the tasks feature: retention of finished task records (run by beat)."""

from collections.abc import Iterator
from datetime import datetime, timedelta

from celery import shared_task
from celery.utils.log import get_task_logger
from flask import current_app
from sqlalchemy import Delete, bindparam, delete, select

from project.database import bookkeeping_engine
from project.idempotency.models import IdempotentReply
from project.idempotency.replies import RETENTION as REPLY_RETENTION
from project.tasks.models import FINISHED_STATES, TaskRecord, utc_now

logger = get_task_logger(__name__)

PURGE_BATCH = 1000  # rows per transaction

_records = TaskRecord.__table__
# Unfinished records stay whatever their age: their outcome is still to come.
DELETE_FINISHED_RECORDS = (
    delete(_records)
    .where(
        _records.c.seq.in_(
            select(_records.c.seq)
            .where(
                _records.c.state.in_(FINISHED_STATES),
                _records.c.finished_at < bindparam("cutoff"),
            )
            .limit(PURGE_BATCH)
        )
    )
    .returning(_records.c.id)
)
_replies = IdempotentReply.__table__
DELETE_EXPIRED_REPLIES = (
    delete(_replies)
    .where(
        _replies.c.key_hash.in_(
            select(_replies.c.key_hash)
            .where(_replies.c.created_at < bindparam("cutoff"))
            .limit(PURGE_BATCH)
        )
    )
    .returning(_replies.c.key_hash)
)


def deleted_in_batches(statement: Delete, cutoff: datetime) -> Iterator[list[str]]:
    """Run a batched DELETE ... RETURNING until a batch comes back short; yield each batch's keys.

    One transaction per batch: locks stay short, and a long backlog still moves.
    """
    while True:
        with bookkeeping_engine().begin() as connection:
            keys = connection.execute(statement, {"cutoff": cutoff}).scalars().all()
        yield keys
        if len(keys) < PURGE_BATCH:
            return


@shared_task
def purge_tasks() -> dict[str, int]:
    """Delete task records (and results) finished more than TASK_RETENTION_DAYS ago, in batches.

    Also deletes stored idempotent replies past their 24 hours. Returns the counts.
    """
    cutoff = utc_now() - timedelta(days=current_app.config["TASK_RETENTION_DAYS"])
    backend = current_app.extensions["celery"].backend
    records = 0
    for ids in deleted_in_batches(DELETE_FINISHED_RECORDS, cutoff):
        if ids:
            # Results in Redis usually expired long before (CELERY_RESULT_EXPIRES); not always.
            backend.client.delete(*(backend.get_key_for_task(task_id) for task_id in ids))
        records += len(ids)
    expired = deleted_in_batches(DELETE_EXPIRED_REPLIES, utc_now() - REPLY_RETENTION)
    replies = sum(len(keys) for keys in expired)
    logger.info("purged %d finished task records and %d idempotent replies", records, replies)
    return {"task_records": records, "idempotent_replies": replies}
