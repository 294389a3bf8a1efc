"""The tasks JSON API: queue `divide`, follow a task, list recent tasks."""

import uuid
from typing import Any

from celery import current_app as current_celery_app
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult
from flask import Blueprint, Response, jsonify, request, url_for
from sqlalchemy import select

from project import db
from project.errors import Problem, validation_problem
from project.tasks.models import TaskRecord
from project.tasks.records import forget_task, record_task, recorded_by_caller
from project.users.tasks import divide
from project.validation import finite_number, json_object, query_int, query_seconds

tasks_blueprint = Blueprint("tasks", __name__, url_prefix="/tasks")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_TASK_ID_LENGTH = 64  # the column's size
# Long enough to save most polls, short enough not to hold a gunicorn thread for long.
MAX_WAIT_SECONDS = 10.0


def _short_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _url(task_id: str) -> str:
    return url_for("tasks.get_task", task_id=task_id)


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
        "url": _url(record.id),
        "args": record.args,
        "created_at": record.created_at.isoformat(),
    }
    if meta.get("date_done"):
        view["finished_at"] = str(meta["date_done"])
    if meta["status"] == "SUCCESS":
        view["result"] = meta["result"]
    elif meta["status"] in ("FAILURE", "RETRY") and isinstance(meta["result"], BaseException):
        error = meta["result"]
        view["error"] = {"type": type(error).__name__, "message": str(error)}
    return view


@tasks_blueprint.post("/divide")
def queue_divide() -> tuple[Response, int, dict[str, str]]:
    """Queue `divide(x, y)`; y = 0 is accepted and fails in the worker."""
    body = json_object()
    errors: dict[str, str] = {}
    x = finite_number(body, "x", errors)
    y = finite_number(body, "y", errors)
    if errors:
        raise validation_problem(errors)
    task_id = str(uuid.uuid4())
    # Recorded before publishing, so the worker never runs a task the API cannot show.
    record_task(task_id, divide.name, [x, y])
    try:
        with recorded_by_caller():
            divide.apply_async((x, y), task_id=task_id)
    except Exception:
        forget_task(task_id)  # nothing was queued
        raise
    url = _url(task_id)
    view = {"id": task_id, "name": "divide", "state": "PENDING", "url": url}
    return jsonify(view), 202, {"Location": url}


def _find(task_id: str) -> TaskRecord | None:
    """Return the record of a task id, or None (also for text no task id can be)."""
    if len(task_id) > MAX_TASK_ID_LENGTH or "\x00" in task_id:
        return None
    return db.session.scalar(select(TaskRecord).where(TaskRecord.id == task_id))


@tasks_blueprint.get("/<task_id>")
def get_task(task_id: str) -> Response:
    """Return a task's state and result or error; `?wait=S` first waits up to S s for the end."""
    wait = query_seconds("wait", MAX_WAIT_SECONDS)
    record = _find(task_id)
    if record is None:
        raise Problem(404, "Not Found", "This service never issued that task id.", "not-found")
    if wait:
        wait_until_finished(record.id, wait)
    return jsonify(task_view(record))


def wait_until_finished(task_id: str, timeout: float) -> None:
    """Block until the task finishes or `timeout` passes (Redis pub/sub: no polling)."""
    try:
        AsyncResult(task_id).get(timeout=timeout, propagate=False)
    except CeleryTimeoutError:
        pass  # still running: the caller gets the current state


@tasks_blueprint.get("/")
def list_tasks() -> Response:
    """List the tasks this service issued, newest first, `limit` at a time after task `after`."""
    limit = query_int("limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    query = select(TaskRecord).order_by(TaskRecord.seq.desc()).limit(limit + 1)
    after = request.args.get("after")
    if after is not None:
        cursor = _find(after)
        if cursor is None:
            raise validation_problem({"after": "must be the id of a listed task"})
        query = query.where(TaskRecord.seq < cursor.seq)
    rows = db.session.scalars(query).all()
    page = rows[:limit]
    next_url = None
    if len(rows) > limit:
        next_url = url_for("tasks.list_tasks", limit=limit, after=page[-1].id)
    metas = task_metas([record.id for record in page])
    items = [task_view(record, meta) for record, meta in zip(page, metas, strict=True)]
    return jsonify({"items": items, "next": next_url})
