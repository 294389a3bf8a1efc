"""The tasks JSON API: queue `divide`, follow a task, list recent tasks."""

from typing import Any

from apiflask import APIBlueprint
from celery import current_app as current_celery_app
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult
from flask import url_for
from sqlalchemy import select

from project import db
from project.errors import Problem, validation_problem
from project.schemas import LocationHeader
from project.tasks.models import TaskRecord
from project.tasks.records import enqueue
from project.tasks.schemas import (
    DivideIn,
    QueuedTask,
    TaskOut,
    TaskPage,
    TaskPageQuery,
    TaskWaitQuery,
)
from project.users.tasks import divide

tasks_blueprint = APIBlueprint("tasks", __name__, url_prefix="/tasks", tag="Tasks")

MAX_TASK_ID_LENGTH = 64  # the column's size
NOT_FOUND = {404: "This service never issued that task id."}


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
    pending = {"status": "PENDING", "result": None}
    return [backend.decode_result(value) if value else pending for value in raw]


def task_view(record: TaskRecord, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a task as the API shows it, with its state from the result backend."""
    if meta is None:
        meta = current_celery_app.backend.get_task_meta(record.id)
    view: dict[str, Any] = {
        "id": record.id,
        "name": _short_name(record.name),
        "state": meta["status"],
        "url": task_url(record.id),
        "args": record.args,
        "created_at": record.created_at,
        "finished_at": meta.get("date_done"),
    }
    if meta["status"] == "SUCCESS":
        view["result"] = meta["result"]
    elif meta["status"] in ("FAILURE", "RETRY") and isinstance(meta["result"], BaseException):
        error = meta["result"]
        view["error"] = {"type": type(error).__name__, "message": str(error)}
    return view


@tasks_blueprint.post("/divide")
@tasks_blueprint.input(DivideIn, arg_name="operands")
@tasks_blueprint.output(QueuedTask, status_code=202, headers=LocationHeader)
def queue_divide(operands: DivideIn) -> tuple[dict[str, str], int, dict[str, str]]:
    """Queue `divide(x, y)`; y = 0 is accepted and fails in the worker."""
    return queued(enqueue(divide, operands.x, operands.y), divide.name)


def _find(task_id: str) -> TaskRecord | None:
    """Return the record of a task id, or None (also for text no task id can be)."""
    if len(task_id) > MAX_TASK_ID_LENGTH or "\x00" in task_id:
        return None
    return db.session.scalar(select(TaskRecord).where(TaskRecord.id == task_id))


@tasks_blueprint.get("/<task_id>")
@tasks_blueprint.input(TaskWaitQuery, location="query", arg_name="query")
@tasks_blueprint.output(TaskOut)
@tasks_blueprint.doc(responses=NOT_FOUND)
def get_task(task_id: str, query: TaskWaitQuery) -> dict[str, Any]:
    """Return a task's state and result or error; `?wait=S` first waits up to S s for the end."""
    record = _find(task_id)
    if record is None:
        raise Problem(404, "Not Found", "This service never issued that task id.", "not-found")
    if query.wait:
        wait_until_finished(record.id, query.wait)
    return task_view(record)


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
    if page.after is not None:
        cursor = _find(page.after)
        if cursor is None:
            raise validation_problem({"after": "must be the id of a listed task"})
        query = query.where(TaskRecord.seq < cursor.seq)
    rows = db.session.scalars(query).all()
    records = rows[: page.limit]
    next_url = None
    if len(rows) > page.limit:
        next_url = url_for("tasks.list_tasks", limit=page.limit, after=records[-1].id)
    metas = task_metas([record.id for record in records])
    items = [task_view(record, meta) for record, meta in zip(records, metas, strict=True)]
    return {"items": items, "next": next_url}
