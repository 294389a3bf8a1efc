"""Periodic work of the tasks feature: retention of finished task records (run by beat)."""

from datetime import timedelta

from celery import shared_task
from celery.utils.log import get_task_logger
from flask import current_app
from sqlalchemy import bindparam, delete, select

from project.database import bookkeeping_engine
from project.idempotency.models import IdempotentReply
from project.idempotency.replies import RETENTION as REPLY_RETENTION
from project.tasks.models import FINISHED_STATES, TaskRecord, utc_now

logger = get_task_logger(__name__)

PURGE_BATCH = 1000  # rows per transaction: short locks, and a long backlog still moves

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
DELETE_EXPIRED_REPLIES = delete(_replies).where(
    _replies.c.key_hash.in_(
        select(_replies.c.key_hash)
        .where(_replies.c.created_at < bindparam("cutoff"))
        .limit(PURGE_BATCH)
    )
)


@shared_task
def purge_tasks() -> dict[str, int]:
    """Delete task records (and results) finished more than TASK_RETENTION_DAYS ago, in batches.

    Also deletes stored idempotent replies past their 24 hours. Returns the counts.
    """
    cutoff = utc_now() - timedelta(days=current_app.config["TASK_RETENTION_DAYS"])
    backend = current_app.extensions["celery"].backend
    records = 0
    while True:
        with bookkeeping_engine().begin() as connection:
            ids = connection.execute(DELETE_FINISHED_RECORDS, {"cutoff": cutoff}).scalars().all()
        if ids:
            # Results in Redis usually expired long before (CELERY_RESULT_EXPIRES); not always.
            backend.client.delete(*(backend.get_key_for_task(task_id) for task_id in ids))
        records += len(ids)
        if len(ids) < PURGE_BATCH:
            break
    replies = 0
    while True:
        with bookkeeping_engine().begin() as connection:
            deleted = connection.execute(
                DELETE_EXPIRED_REPLIES, {"cutoff": utc_now() - REPLY_RETENTION}
            ).rowcount
        replies += deleted
        if deleted < PURGE_BATCH:
            break
    logger.info("purged %d finished task records and %d idempotent replies", records, replies)
    return {"task_records": records, "idempotent_replies": replies}
