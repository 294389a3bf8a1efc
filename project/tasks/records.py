"""Keep a record of every task published, however it was queued."""

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

from celery import Celery, signals
from flask import has_app_context
from sqlalchemy import bindparam, insert, update
from sqlalchemy.exc import IntegrityError

from project.celery_utils import FlaskCelery, FlaskTask, publishing_app
from project.database import bookkeeping_engine
from project.tasks.models import TaskRecord, utc_now

log = logging.getLogger(__name__)

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


def record_task(task_id: str, name: str, args: list[Any]) -> None:
    """Insert the record of a task being published now, outside the publisher's transaction."""
    now = utc_now()
    row = {"id": task_id, "name": name, "args": args, "created_at": now, "published_at": now}
    with bookkeeping_engine().begin() as connection:
        connection.execute(RECORD, row)


MARK_REPUBLISHABLE = (
    update(TaskRecord.__table__)
    .where(TaskRecord.__table__.c.id == bindparam("task_id"))
    .values(republishable=True)
)

# Protocol 2 headers a record need not keep (ids, reprs), and those it cannot (a countdown,
# an expiry, a group, stamps): a publish setting one of the latter is not republishable,
# nor one carrying a header of its own.
_HEADERS_ANY_VALUE = frozenset("lang task id root_id parent_id argsrepr kwargsrepr origin".split())
_HEADERS_UNSET = frozenset(
    "shadow eta expires group group_index retries stamps stamped_headers "
    "replaced_task_nesting".split()
)
_EMBED_UNSET = ("callbacks", "errbacks", "chain", "chord")

# The id of the task being published when its record can repeat the publish; its record
# is marked so once the broker took it (a publish that raised is never republished).
_plain_publish: ContextVar[str | None] = ContextVar("plain_task_publish", default=None)


def is_plain_publish(
    celery: Celery, name: str, body: Any, headers: dict[str, Any], routing_key: str | None
) -> bool:
    """Say whether a publish carried only name and args, on the task's own route.

    Only such a task can be published again from its record (project/tasks/redelivery.py).
    A priority is not seen here (kombu sets it after this signal): a republished task has
    its task's own.
    """
    try:
        return _is_plain_publish(celery, name, body, headers, routing_key)
    except Exception as error:  # a router of the project's that fails on these args
        log.warning("task %s: not republishable, its route failed: %s", headers.get("id"), error)
        return False


def _is_plain_publish(
    celery: Celery, name: str, body: Any, headers: dict[str, Any], routing_key: str | None
) -> bool:
    task = celery.tasks.get(name)
    # Only FlaskTask claims its record: another task's record would stay PENDING for good.
    if not isinstance(task, FlaskTask) or not isinstance(body, list | tuple) or len(body) != 3:
        return False
    args, kwargs, embed = body
    if kwargs or any((embed or {}).get(key) for key in _EMBED_UNSET):
        return False
    options = dict(task._get_exec_options())  # a copy: routing pops "queue" from it
    own = {
        "timelimit": [options.get("time_limit"), options.get("soft_time_limit")],
        "ignore_result": task.ignore_result,
    }
    for key, value in headers.items():
        if key in own:
            if value != own[key]:
                return False
        elif key in _HEADERS_UNSET:
            if value:
                return False
        elif key not in _HEADERS_ANY_VALUE:
            return False
    route = celery.amqp.router.route(options, name, args)
    queue = route["queue"]
    return routing_key in {route.get("routing_key"), queue.name, queue.routing_key} - {None}


def _recording_app(headers: dict[str, Any]) -> FlaskCelery | None:
    """The app whose publish this is, when it gets a record here; else None (see below)."""
    name = headers.get("task", "")
    if _recorded_by_caller.get() or name.startswith("celery.") or headers.get("retries"):
        return None
    return publishing_app()


def _app_context(publisher: FlaskCelery) -> AbstractContextManager:
    return nullcontext() if has_app_context() else publisher.flask_app.app_context()


def record_published_task(
    headers: dict[str, Any], body: Any, routing_key: str | None = None, **_: Any
) -> None:
    """Record a task as it is published, however it was queued (`divide.delay` in `flask shell`).

    Skipped for retries (the first publish recorded them), for the outbox's publishes
    (recorded already), for Celery's own tasks, and for tasks another Celery app in this
    process publishes (a client of another service's broker): those are not this service's.
    """
    publisher = _recording_app(headers)
    if publisher is None:
        return
    name, task_id = headers["task"], headers["id"]
    args = list(body[0]) if isinstance(body, list | tuple) and body else []
    with _app_context(publisher):
        try:
            # Its own transaction: never commits or rolls back the publisher's session.
            record_task(task_id, name, args)
        except IntegrityError:
            return  # the same id published twice (apply_async(task_id=...)) is recorded once
    plain = is_plain_publish(publisher, name, body, headers, routing_key)
    _plain_publish.set(task_id if plain else None)


def mark_republishable(headers: dict[str, Any], **_: Any) -> None:
    """Once the broker took a plain publish, let its record publish it again if it is lost."""
    task_id = headers.get("id")
    if task_id is None or _plain_publish.get() != task_id:
        return
    _plain_publish.set(None)
    publisher = publishing_app()
    if publisher is None:
        return
    with _app_context(publisher), bookkeeping_engine().begin() as connection:
        connection.execute(MARK_REPUBLISHABLE, {"task_id": task_id})


def connect_task_recording() -> None:
    """Record every task published from this process (idempotent)."""
    signals.before_task_publish.connect(
        record_published_task, weak=False, dispatch_uid="project.record_published_task"
    )
    signals.after_task_publish.connect(
        mark_republishable, weak=False, dispatch_uid="project.mark_republishable"
    )
