"""Keep a record of every task published, however it was queued."""

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

from celery import Celery, signals
from flask import has_app_context
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from project.celery_utils import publishing_app
from project.database import bookkeeping_engine
from project.tasks.models import TaskRecord, utc_now

# Set while a task is published whose record already exists (the outbox's own publishes).
_recorded_by_caller: ContextVar[bool] = ContextVar("task_recorded_by_caller", default=False)


@contextmanager
def recorded_by_caller() -> Iterator[None]:
    """Publish inside this block without a second record: the caller committed one."""
    token = _recorded_by_caller.set(True)
    try:
        yield
    finally:
        _recorded_by_caller.reset(token)


RECORD = insert(TaskRecord.__table__)  # built once: it runs for every task published


def record_task(task_id: str, name: str, args: list[Any], republishable: bool = False) -> None:
    """Insert the record of a task being published now, outside the publisher's transaction."""
    now = utc_now()
    row = {"id": task_id, "name": name, "args": args, "created_at": now, "published_at": now}
    row["republishable"] = republishable
    with bookkeeping_engine().begin() as connection:
        connection.execute(RECORD, row)


# What a publish may carry besides name and args that its record does not keep.
_EXTRA_HEADERS = ("eta", "expires", "group")
_EXTRA_EMBED = ("callbacks", "errbacks", "chain", "chord")


def is_plain_publish(
    celery: Celery, name: str, body: Any, headers: dict[str, Any], routing_key: str | None
) -> bool:
    """Say whether a publish carried only name and args, on the task's own route.

    Only such a task can be published again from its record (project/tasks/redelivery.py).
    """
    if not isinstance(body, list | tuple) or len(body) != 3:
        return False
    args, kwargs, embed = body
    if kwargs or any(headers.get(key) for key in _EXTRA_HEADERS):
        return False
    if any((embed or {}).get(key) for key in _EXTRA_EMBED):
        return False
    task = celery.tasks.get(name)
    if task is None:
        return False
    options = task._get_exec_options()  # what apply_async adds by itself: limits, queue
    limits = [options.get("time_limit"), options.get("soft_time_limit")]
    if headers.get("timelimit") not in (None, limits):
        return False
    route = celery.amqp.router.route(options, name, args)
    queue = route["queue"]
    return routing_key in {route.get("routing_key"), queue.name, queue.routing_key} - {None}


def record_published_task(
    headers: dict[str, Any], body: Any, routing_key: str | None = None, **_: Any
) -> None:
    """Record a task as it is published, however it was queued (`divide.delay` in `flask shell`).

    Skipped for retries (the first publish recorded them), for the outbox's publishes
    (recorded already), for Celery's own tasks, and for tasks another Celery app in this
    process publishes (a client of another service's broker): those are not this service's.
    """
    name = headers.get("task", "")
    if _recorded_by_caller.get() or name.startswith("celery.") or headers.get("retries"):
        return
    publisher = publishing_app()
    if publisher is None:
        return
    args = list(body[0]) if isinstance(body, list | tuple) and body else []
    context = nullcontext() if has_app_context() else publisher.flask_app.app_context()
    with context:
        try:
            # Its own transaction: never commits or rolls back the publisher's session.
            plain = is_plain_publish(publisher, name, body, headers, routing_key)
            record_task(headers["id"], name, args, republishable=plain)
        except IntegrityError:
            pass  # the same id published twice (apply_async(task_id=...)) is recorded once


def connect_task_recording() -> None:
    """Record every task published from this process (idempotent)."""
    signals.before_task_publish.connect(
        record_published_task, weak=False, dispatch_uid="project.record_published_task"
    )
