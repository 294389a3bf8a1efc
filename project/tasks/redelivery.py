"""Publish again the tasks the broker lost: published, never started, and no longer in Redis.

kombu's Redis transport takes a message off its queue (BRPOP) a moment before it notes it
as taken and unacknowledged (kombu issue #305). A worker killed in that moment loses the
task for good: it is in no queue, and not among the unacknowledged messages that
visibility_timeout hands back. Its record still tells: PENDING, published long ago.

So every worker, each half TASK_LOST_AFTER_SECONDS, takes the records PENDING longer than
that, looks for them in the queues it consumes and among the unacknowledged messages,
twice a second apart, and publishes again those it found in neither look. A task merely
waiting in a long queue is found there and left alone. Should a copy still run twice
(the first turns up after all), the claim runs it at most once after it finished.
"""

import logging
import time
from collections.abc import Iterable
from datetime import timedelta

from celery import Celery
from sqlalchemy import bindparam, select, update

from project import db
from project.celery_broker import held_task_ids
from project.tasks.models import PENDING, TaskRecord, utc_now
from project.tasks.outbox import publish

log = logging.getLogger(__name__)

CHECK_BATCH = 100  # records looked for per check
CONFIRM_SECONDS = 1.0  # between the two looks: longer than a delivery takes to be noted

_records = TaskRecord.__table__
_pending_since = (_records.c.state == PENDING, _records.c.published_at < bindparam("cutoff"))
LONG_PENDING = (
    select(_records.c.id)
    .where(*_pending_since, _records.c.name.in_(bindparam("names", expanding=True)))
    .order_by(_records.c.seq)
    .limit(CHECK_BATCH)
)
# Locked, so that workers checking at once publish each lost task once.
STILL_PENDING = (
    select(_records.c.id, _records.c.name, _records.c.args)
    .where(*_pending_since, _records.c.id.in_(bindparam("ids", expanding=True)))
    .with_for_update(skip_locked=True)
)
# Published again now: the next check leaves it alone for TASK_LOST_AFTER_SECONDS.
MARK_REPUBLISHED = (
    update(_records)
    .where(_records.c.id.in_(bindparam("ids", expanding=True)))
    .values(published_at=bindparam("now"))
)


def recoverable_task_names(celery: Celery, queues: Iterable[str]) -> list[str]:
    """Name the tasks this Celery app runs whose route leads to one of `queues`.

    A task routed elsewhere is looked for in its own workers' queues, by those workers.
    """
    queues = set(queues)
    return sorted(
        name
        for name in celery.tasks
        if not name.startswith("celery.")
        and celery.amqp.router.route({}, name)["queue"].name in queues
    )


def republish_lost(celery: Celery, queues: list[str], names: list[str], lost_after: float) -> int:
    """Publish again this worker's tasks the broker lost (see the module); return how many."""
    cutoff = utc_now() - timedelta(seconds=lost_after)
    with db.engine.connect() as connection:
        ids = connection.execute(LONG_PENDING, {"cutoff": cutoff, "names": names}).scalars()
        suspects = set(ids)
    if suspects:
        suspects -= held_task_ids(celery, queues, suspects)
    if suspects:
        time.sleep(CONFIRM_SECONDS)
        suspects -= held_task_ids(celery, queues, suspects)
    if not suspects:
        return 0
    with db.engine.begin() as connection:
        params = {"cutoff": cutoff, "ids": sorted(suspects)}
        rows = connection.execute(STILL_PENDING, params).all()
        for task_id, name, args in rows:
            publish(name, task_id, args)
        if rows:
            connection.execute(
                MARK_REPUBLISHED, {"ids": [row.id for row in rows], "now": utc_now()}
            )
    for row in rows:
        log.warning("task %s (%s) was lost by the broker: published again", row.id, row.name)
    return len(rows)
