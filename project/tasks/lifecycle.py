"""The worker's side of a task record: claim each delivery, write the outcome, honour cancel."""

import time
from typing import Any

from celery import Task
from celery import current_task as current_celery_task
from celery.exceptions import Ignore
from flask import current_app
from sqlalchemy import bindparam, literal, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from project.database import DriverStatement, bookkeeping_engine
from project.tasks.models import (
    FAILURE,
    FINISHED_STATES,
    PENDING,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
    TaskRecord,
    utc_now,
)

CANCEL_CHECK_SECONDS = 0.2
OUTCOME_WRITE_ATTEMPTS = 60  # a second apart: longer than a database restart takes

# Built once, on the table, and run as driver SQL: these run twice per task, and Core's
# execute() cost as much CPU as the round trip itself (see DriverStatement).
_records = TaskRecord.__table__
_this_task = _records.c.id == bindparam("task_id")
# literal(): one parameter per state, where a plain list would need SQLAlchemy to expand it.
_not_finished = _records.c.state.not_in([literal(state) for state in FINISHED_STATES])
CLAIM = DriverStatement(
    update(_records)
    .where(_this_task, _not_finished)
    .values(
        state=STARTED,
        deliveries=_records.c.deliveries + 1,
        started_at=bindparam("now"),
        published_at=bindparam("now"),  # a worker has it, whoever published it
    )
    .returning(_records.c.deliveries)
)
STATE = DriverStatement(select(_records.c.state).where(_this_task))
# Also over REVOKED: a task that never checks for cancellation ran to its end anyway.
_set_outcome = update(_records).where(_this_task).values
OUTCOMES = {
    SUCCESS: DriverStatement(
        _set_outcome(state=SUCCESS, result=bindparam("result"), finished_at=bindparam("now"))
    ),
    FAILURE: DriverStatement(
        _set_outcome(state=FAILURE, error=bindparam("error"), finished_at=bindparam("now"))
    ),
    RETRY: DriverStatement(_set_outcome(state=RETRY)),
}
# A delivery the worker dropped unrun (expired, or revoked by Celery's own `revoke`). Only
# over PENDING: a copy dropped while another runs or waits to retry leaves that one be.
REVOKE_QUEUED = DriverStatement(
    update(_records)
    .where(_this_task, _records.c.state == PENDING)
    .values(state=REVOKED, finished_at=bindparam("now"))
)


class PoisonMessage(Exception):
    """The task was delivered again and again and its worker process died each time."""


class Cancelled(Exception):
    """The task was cancelled while it ran (`POST /tasks/<id>/cancel`)."""


def begin_delivery(task: Task) -> None:
    """Claim this delivery of the running task in its record, or refuse to run it.

    Raises Ignore when the task was cancelled or already finished (a duplicate
    delivery), and PoisonMessage when it was delivered more than
    CELERY_TASK_MAX_DELIVERIES times without finishing. Tasks with no record
    (queued around this service) just run.
    """
    task_id = task.request.id
    claimed = CLAIM.run(bookkeeping_engine(), {"task_id": task_id, "now": utc_now()})
    deliveries = claimed[0] if claimed else None
    if deliveries is None:
        state = record_state(task_id)
        if state == REVOKED:
            task.backend.mark_as_revoked(task_id, "cancelled", request=task.request)
        if state is not None:
            raise Ignore(f"task {task_id} is {state}: not run again")
    # Each retry is one delivery that ended normally; the rest ended with a dead process.
    unfinished = (deliveries or 0) - task.request.retries
    limit = current_app.config["CELERY_TASK_MAX_DELIVERIES"]
    if unfinished > limit:
        raise PoisonMessage(
            f"delivered {unfinished - 1} times and its worker process died each time "
            f"(crash, out of memory or killed); not run again (CELERY_TASK_MAX_DELIVERIES="
            f"{limit})"
        )


def record_dropped_delivery(sender: Task | None = None, request: Any = None, **_: Any) -> None:
    """Mark REVOKED the queued record of a task the worker dropped unrun (task_revoked).

    Else its record would stay PENDING, and the broker, holding it no more, would seem to
    have lost it (project/tasks/redelivery.py). Runs in the worker's main process.
    """
    if sender is None or request is None or not hasattr(sender.app, "flask_app"):
        return
    engine = bookkeeping_engine(sender.app.flask_app)
    REVOKE_QUEUED.run(engine, {"task_id": request.id, "now": utc_now()})


def error_view(error: BaseException) -> dict[str, str]:
    """Describe an exception as the API shows it: its class and message, no traceback."""
    return {"type": type(error).__name__, "message": str(error)}


def end_delivery(engine: Engine, task_id: str, state: str, retval: Any) -> None:
    """Write how this delivery ended into the record: outcome, or RETRY."""
    statement = OUTCOMES.get(state)
    if statement is None:
        return  # IGNORED, REJECTED: nothing ended
    values = {"task_id": task_id, "now": utc_now()}
    if state == SUCCESS:
        values["result"] = retval
    elif state == FAILURE:
        values["error"] = error_view(retval)
    for attempt in range(OUTCOME_WRITE_ATTEMPTS):
        try:
            statement.run(engine, values)
            return
        except OperationalError:  # the database restarts: wait for it, the outcome must last
            if attempt == OUTCOME_WRITE_ATTEMPTS - 1:
                raise
            time.sleep(1)


def record_state(task_id: str) -> str | None:
    """Return the state in the task's record (one indexed read), or None without a record."""
    row = STATE.run(bookkeeping_engine(), {"task_id": task_id})
    return row[0] if row else None


def cancel_requested(task_id: str) -> bool:
    """Say whether the task was cancelled."""
    return record_state(task_id) == REVOKED


def sleep_unless_cancelled(seconds: float) -> None:
    """Sleep in small steps; raise Cancelled as soon as the running task is cancelled."""
    deadline = time.monotonic() + seconds
    task_id = current_celery_task.request.id if current_celery_task else None
    while (left := deadline - time.monotonic()) > 0:
        if task_id and cancel_requested(task_id):
            raise Cancelled("cancelled while running")
        time.sleep(min(CANCEL_CHECK_SECONDS, left))
