"""Publish again the tasks the broker lost: published, never started, and no longer in Redis.

kombu's Redis transport takes a message off its queue (BRPOP) a moment before it notes it
as taken and unacknowledged (kombu issue #305). A worker killed in that moment loses the
task for good: it is in no queue, and not among the unacknowledged messages that
visibility_timeout hands back. Its record still tells: PENDING, published long ago.

So every worker, each half TASK_LOST_AFTER_SECONDS, takes the records PENDING longer than
that whose record alone can publish them again (`republishable`: name and args were all
their publish had), looks for them in the queues it consumes and among the unacknowledged
messages, twice a second apart, and publishes again those it found in neither look. A
task merely waiting in a long queue is found there and left alone. Should the first copy
turn up after all, the claim refuses it once the task finished; were both delivered
while it runs, both would run, as with any redelivery (tasks are idempotent).
"""

import logging
import time
from datetime import timedelta
from typing import Any

from celery import Celery
from sqlalchemy import bindparam, select

from project import db
from project.celery_broker import held_task_ids
from project.celery_utils import FlaskTask
from project.tasks.models import PENDING, TaskRecord, utc_now
from project.tasks.outbox import publish_locked

log = logging.getLogger(__name__)

CHECK_BATCH = 1000  # records looked for per check, in one read of the queues
CONFIRM_SECONDS = 1.0  # between the two looks: longer than a delivery takes to be noted

_records = TaskRecord.__table__
_lost_if_missing = (
    _records.c.state == PENDING,
    _records.c.republishable.is_(True),
    _records.c.published_at < bindparam("cutoff"),
)
# Of this worker's tasks: the records of tasks routed elsewhere, or no longer defined,
# would otherwise fill the batch for good.
LONG_PENDING = (
    select(_records.c.id, _records.c.name, _records.c.args)
    .where(*_lost_if_missing, _records.c.name.in_(bindparam("names", expanding=True)))
    .order_by(_records.c.seq)
    .limit(CHECK_BATCH)
)
# Locked, so that workers checking at once publish each lost task once.
STILL_PENDING = (
    select(_records.c.id, _records.c.name, _records.c.args)
    .where(*_lost_if_missing, _records.c.id.in_(bindparam("ids", expanding=True)))
    .with_for_update(skip_locked=True)
)


def routes_to(celery: Celery, name: str, args: list[Any], queues: set[str]) -> bool:
    """Say whether this app runs task `name` and routes it, with `args`, to one of `queues`.

    A task routed elsewhere is looked for by the workers that read its queue.
    """
    task = celery.tasks.get(name)
    if not isinstance(task, FlaskTask):  # only FlaskTask claims its record (STARTED)
        return False
    try:
        # A copy: routing pops "queue" from the options it is given.
        route = celery.amqp.router.route(dict(task._get_exec_options()), name, args)
    except Exception as error:  # a router of the project's that fails on these args
        log.warning("task %s: no route to look for it in: %s", name, error)
        return False
    return route["queue"].name in queues


def republish_lost(celery: Celery, queues: set[str], lost_after: float) -> int:
    """Publish again the tasks in `queues` the broker lost (see the module); return how many."""
    cutoff = utc_now() - timedelta(seconds=lost_after)
    names = [name for name in celery.tasks if routes_to(celery, name, [], queues)]
    if not names:
        return 0
    with db.engine.connect() as connection:
        rows = connection.execute(LONG_PENDING, {"cutoff": cutoff, "names": names}).all()
    suspects = {task_id for task_id, name, args in rows if routes_to(celery, name, args, queues)}
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
        # Marked published now: the next check leaves them alone for TASK_LOST_AFTER_SECONDS.
        publish_locked(connection, rows)
    for row in rows:
        log.warning("task %s (%s) was lost by the broker: published again", row.id, row.name)
    return len(rows)
