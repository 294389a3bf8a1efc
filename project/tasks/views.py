"""The tasks JSON API: queue `divide`, follow, cancel and list tasks."""

import logging
from typing import Any

from apiflask import APIBlueprint
from celery import current_app as current_celery_app
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult
from flask import url_for
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError
from sqlalchemy import select, update

from project import db
from project.errors import Problem, validation_problem
from project.idempotency.replies import idempotent
from project.schemas import LocationHeader
from project.tasks.lifecycle import error_view
from project.tasks.models import (
    FAILURE,
    FINISHED_STATES,
    PENDING,
    RETRY,
    REVOKED,
    SUCCESS,
    TaskRecord,
    utc_now,
)
from project.tasks.outbox import enqueue_on_commit
from project.tasks.queue_limit import refuse_when_queue_full
from project.tasks.schemas import (
    DivideIn,
    QueuedTask,
    TaskOut,
    TaskPage,
    TaskPageQuery,
    TaskWaitQuery,
)
from project.users.tasks import divide

log = logging.getLogger(__name__)
tasks_blueprint = APIBlueprint("tasks", __name__, url_prefix="/tasks", tag="Tasks")

MAX_TASK_ID_LENGTH = 64  # the column's size
NOT_FOUND = {404: "This service never issued that task id."}
QUEUE_FULL = {503: "MAX_QUEUED_TASKS tasks wait already; `Retry-After` says when to try again."}


def _short_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def task_url(task_id: str) -> str:
    """Return the URL that follows a task."""
    return url_for("tasks.get_task", task_id=task_id)


def queued(task_id: str, name: str) -> tuple[dict[str, str], int, dict[str, str]]:
    """Answer 202 for a task just queued, with its URL in `Location`."""
    url = task_url(task_id)
    view = {"id": task_id, "name": _short_name(name), "state": "PENDING", "url": url}
    return view, 202, {"Location": url}


def task_metas(task_ids: list[str]) -> list[dict[str, Any]]:
    """Return the tasks' result metadata, in one MGET where the backend is Redis."""
    backend = current_celery_app.backend
    if not task_ids or not hasattr(backend, "mget"):
        return [backend.get_task_meta(task_id) for task_id in task_ids]
    raw = backend.mget([backend.get_key_for_task(task_id) for task_id in task_ids])
    # A task with nothing stored yet is PENDING, as Celery itself reports it.
    pending = {"status": PENDING, "result": None}
    return [backend.decode_result(value) if value else pending for value in raw]


def task_view(record: TaskRecord, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a task as the API shows it: the record's outcome once finished, else Redis's state.

    A finished record answers alone, so an outcome outlasts its expiry in Redis (or a Redis
    that lost everything). Before that, Redis has the live state, unless it knows nothing
    and the record knows more (STARTED, RETRY).
    """
    view: dict[str, Any] = {
        "id": record.id,
        "name": _short_name(record.name),
        "url": task_url(record.id),
        "args": record.args,
        "created_at": record.created_at,
        "deliveries": record.deliveries,
        "queued_by": record.queued_by,
        "started_at": record.started_at,
    }
    if record.state in FINISHED_STATES:
        view.update(state=record.state, finished_at=record.finished_at)
        if record.state == SUCCESS:
            view["result"] = record.result
        elif record.state == FAILURE:
            view["error"] = record.error
        return view
    if meta is None:
        meta = current_celery_app.backend.get_task_meta(record.id)
    state = meta["status"]
    view.update(state=record.state if state == PENDING else state)
    view["finished_at"] = meta.get("date_done") if state in FINISHED_STATES else None
    if state == SUCCESS:
        view["result"] = meta["result"]
    elif state in (FAILURE, RETRY) and isinstance(meta["result"], BaseException):
        view["error"] = error_view(meta["result"])
    return view


@tasks_blueprint.post("/divide")
@idempotent
@tasks_blueprint.input(DivideIn, arg_name="operands")
@tasks_blueprint.output(QueuedTask, status_code=202, headers=LocationHeader)
@tasks_blueprint.doc(responses=QUEUE_FULL)
def queue_divide(operands: DivideIn) -> tuple[dict[str, str], int, dict[str, str]]:
    """Queue `divide(x, y)`; y = 0 is accepted and fails in the worker."""
    refuse_when_queue_full()
    return queued(enqueue_on_commit(divide, operands.x, operands.y), divide.name)


def _find(task_id: str) -> TaskRecord | None:
    """Return the record of a task id, or None (also for text no task id can be)."""
    if len(task_id) > MAX_TASK_ID_LENGTH or "\x00" in task_id:
        return None
    return db.session.scalar(select(TaskRecord).where(TaskRecord.id == task_id))


def _find_or_404(task_id: str) -> TaskRecord:
    record = _find(task_id)
    if record is None:
        raise Problem(404, "Not Found", "This service never issued that task id.", "not-found")
    return record


@tasks_blueprint.get("/<task_id>")
@tasks_blueprint.input(TaskWaitQuery, location="query", arg_name="query")
@tasks_blueprint.output(TaskOut)
@tasks_blueprint.doc(responses=NOT_FOUND)
def get_task(task_id: str, query: TaskWaitQuery) -> dict[str, Any]:
    """Return a task's state and result or error; `?wait=S` first waits up to S s for the end."""
    record = _find_or_404(task_id)
    if query.wait and record.state not in FINISHED_STATES:
        wait_until_finished(record.id, query.wait)
    return task_view(record)


@tasks_blueprint.post("/<task_id>/cancel")
@tasks_blueprint.output(TaskOut, status_code=202)
@tasks_blueprint.doc(responses={**NOT_FOUND, 409: "The task has already finished."})
def cancel_task(task_id: str) -> tuple[dict[str, Any], int]:
    """Cancel a task: queued, it never runs; running, it stops at its next check (REVOKED)."""
    record = _find_or_404(task_id)
    cancelled = db.session.execute(
        update(TaskRecord)
        .where(TaskRecord.id == record.id, TaskRecord.state.not_in((SUCCESS, FAILURE)))
        .values(state=REVOKED, finished_at=utc_now())
        .returning(TaskRecord.finished_at)
    ).scalar()
    if cancelled is None:
        db.session.rollback()
        raise Problem(409, "Conflict", "The task has already finished.", "conflict")
    db.session.commit()
    record.state, record.finished_at = REVOKED, cancelled
    try:  # tell long polls now; the record alone already stops every delivery
        current_celery_app.backend.mark_as_revoked(record.id, "cancelled")
    except (RedisError, BrokerError) as error:
        log.warning("task %s cancelled; Redis not told: %s", record.id, error)
    return task_view(record), 202


def full_names(name: str) -> list[str]:
    """The task names `name` means: a registered name, else those it is the short name of.

    One full name lets the database walk its (name, seq) index newest first; a suffix
    match (`LIKE '%.divide'`) would read every record.
    """
    registered = current_celery_app.tasks
    if name in registered:
        return [name]
    return [full for full in registered if full.endswith("." + name)] or [name]


def wait_until_finished(task_id: str, timeout: float) -> None:
    """Block until the task finishes or `timeout` passes (Redis pub/sub: no polling)."""
    try:
        AsyncResult(task_id).get(timeout=timeout, propagate=False)
    except CeleryTimeoutError:
        pass  # still running: the caller gets the current state


@tasks_blueprint.get("/")
@tasks_blueprint.input(TaskPageQuery, location="query", arg_name="page")
@tasks_blueprint.output(TaskPage)
def list_tasks(page: TaskPageQuery) -> dict[str, Any]:
    """List the tasks this service issued, newest first, `limit` at a time after task `after`."""
    query = select(TaskRecord).order_by(TaskRecord.seq.desc()).limit(page.limit + 1)
    if page.state is not None:
        query = query.where(TaskRecord.state == page.state)
    if page.name is not None:
        query = query.where(TaskRecord.name.in_(full_names(page.name)))
    if page.after is not None:
        cursor = _find(page.after)
        if cursor is None:
            raise validation_problem({"after": "must be the id of a listed task"})
        query = query.where(TaskRecord.seq < cursor.seq)
    rows = db.session.scalars(query).all()
    records = rows[: page.limit]
    next_url = None
    if len(rows) > page.limit:
        filters = page.model_dump(include={"state", "name"}, exclude_none=True)
        next_url = url_for("tasks.list_tasks", limit=page.limit, after=records[-1].id, **filters)
    # Finished tasks answer from their records: Redis is asked only about the others.
    unfinished = [record.id for record in records if record.state not in FINISHED_STATES]
    metas = dict(zip(unfinished, task_metas(unfinished), strict=True))
    items = [task_view(record, metas.get(record.id)) for record in records]
    return {"items": items, "next": next_url}
