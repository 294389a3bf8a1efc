"""Celery set-up: one Celery app per Flask app, configured from the Flask config."""

import logging
import os
import resource
import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from typing import Any

from billiard.pool import EX_RECYCLE
from celery import Celery, signals
from celery import current_app as current_celery_app
from celery.exceptions import Ignore
from celery.utils.time import get_exponential_backoff_interval
from flask import Flask, has_app_context
from flask_celeryext import AppContextTask
from sqlalchemy.exc import OperationalError

from project.features import feature_packages

NAMESPACE = "CELERY_"
BROKER_TRANSPORT = "project.celery_broker:Transport"
logger = logging.getLogger(__name__)


class FlaskTask(AppContextTask):
    """A task run inside the Flask app context, retried while the database is unreachable."""

    abstract = True
    # A database restart fails a task's queries for a few seconds; retrying with backoff
    # (about 1, 2, 4 ... 30 s, jittered, for several minutes) carries the task through it.
    autoretry_for = (OperationalError,)
    retry_backoff = True
    retry_backoff_max = 30
    retry_jitter = True
    max_retries = 12

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task in the app context, once its record says this delivery may run."""
        # Imported here: project/__init__.py imports this module before it defines `db`.
        from project.tasks.lifecycle import Cancelled, begin_delivery

        if self.request.called_directly:  # a plain function call, not a delivery
            return super().__call__(*args, **kwargs)
        with self._app_context():
            try:
                begin_delivery(self)
            except OperationalError as error:  # the database is down: as for the task's queries
                countdown = get_exponential_backoff_interval(
                    1, self.request.retries, self.retry_backoff_max, full_jitter=True
                )
                raise self.retry(exc=error, countdown=countdown) from None
            try:
                return self.run(*args, **kwargs)
            except Cancelled:
                self.backend.mark_as_revoked(self.request.id, "cancelled", request=self.request)
                raise Ignore("cancelled while running") from None

    def after_return(
        self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Write the outcome (or RETRY) into the task's record, where it outlasts Redis."""
        from project.database import bookkeeping_engine
        from project.tasks.lifecycle import end_delivery

        # The engine is all it needs: no second app context per task (its push and pop,
        # with their teardown, cost about 1.5 % of a task's CPU, profiled). The same app
        # as the claim's, which ran in the current context if there was one.
        app = None if has_app_context() else self.app.flask_app
        end_delivery(bookkeeping_engine(app), task_id, status, retval)

    def _app_context(self) -> AbstractContextManager:
        """The Flask app context to run in: the current one, else a new one."""
        return nullcontext() if has_app_context() else self.app.flask_app.app_context()


class FlaskCelery(Celery):
    """The Celery app of one Flask app (`flask_app`), built by `make_celery`."""

    flask_app: Flask

    def send_task(self, *args: Any, **kwargs: Any) -> Any:
        """Publish as Celery does, letting the publish hooks see which app publishes."""
        token = _publishing.set(self)
        try:
            return super().send_task(*args, **kwargs)
        finally:
            _publishing.reset(token)


# Set while a FlaskCelery publishes: every task's publish goes through its app's send_task.
_publishing: ContextVar[FlaskCelery | None] = ContextVar("publishing_celery_app", default=None)


def publishing_app() -> FlaskCelery | None:
    """The FlaskCelery publishing right now; None while another Celery app publishes."""
    return _publishing.get()


def celery_settings(flask_config: Mapping[str, Any]) -> dict[str, Any]:
    """Map `CELERY_TASK_ACKS_LATE`-style Flask keys to Celery's `task_acks_late` names.

    Celery's own `namespace="CELERY"` accepts these keys too, but warns that
    `CELERY_RESULT_BACKEND` is an old-style name; mapping them first keeps the
    environment variable names users know and gives Celery only new-style names.
    """
    return {
        key.removeprefix(NAMESPACE).lower(): value
        for key, value in flask_config.items()
        if key.startswith(NAMESPACE)
    }


def make_celery(app: Flask) -> FlaskCelery:
    """Build this app's Celery app from the `CELERY_*` settings and make it the default.

    Every task runs inside the Flask app context (`FlaskTask`), whose teardown removes the
    task's database session whether the task succeeded or failed. Being the default app,
    it serves `shared_task` tasks; each feature's `tasks` module is found by itself.
    """
    # These need `db`, defined after this module.
    from project.tasks.lifecycle import record_dropped_delivery
    from project.tasks.sweeper import OutboxSweeper

    celery = FlaskCelery(app.import_name, task_cls=FlaskTask)
    celery.config_from_object(celery_settings(app.config))
    if not celery.conf.broker_transport and str(celery.conf.broker_url).startswith("redis://"):
        # One Redis client per channel, not one per publish and acknowledgement. Not for
        # rediss://: kombu turns TLS on from its own transport's name.
        celery.conf.broker_transport = BROKER_TRANSPORT
    celery.flask_app = app
    celery.autodiscover_tasks(list(feature_packages()))
    celery.steps["worker"].add(OutboxSweeper)
    signals.task_revoked.connect(
        record_dropped_delivery, weak=False, dispatch_uid="project.record_dropped_delivery"
    )
    celery.set_default()
    app.extensions["celery"] = celery
    return celery


@signals.worker_process_init.connect(weak=False, dispatch_uid="project.forget_connections")
def forget_connections_after_fork(**_: Any) -> None:
    """Keep a pool process off the database connections of the worker that forked it."""
    # Imported here: project/__init__.py imports this module before it defines `db`.
    from project.forking import forget_inherited_connections

    flask_app = getattr(current_celery_app, "flask_app", None)
    if flask_app is not None:
        forget_inherited_connections(flask_app)


@signals.worker_init.connect(weak=False, dispatch_uid="project.worker_backend_retries")
def retry_result_writes_in_workers(sender: Any = None, **_: Any) -> None:
    """Let a worker wait out a Redis restart when it stores a result, instead of losing it.

    Only in workers: a web request reading a result should fail fast with 503, not wait.
    """
    conf = current_celery_app.conf
    conf.result_backend_always_retry = True
    # Retry at least every second, so a task resumes as soon as Redis is back instead of
    # sleeping on (its time limit keeps running while it waits).
    conf.result_backend_max_sleep_between_retries_ms = 1000
    conf.result_backend_max_retries = 300  # about 5 minutes


@signals.worker_ready.connect(weak=False, dispatch_uid="project.note_worker_pid")
def note_worker_pid(sender: Any = None, **_: Any) -> None:
    """Note the ready worker's main process id, and a first pass, for its healthcheck."""
    from project.health.worker_probe import passed_file, pidfile

    pidfile(sender.hostname).write_text(str(os.getpid()))
    # Ready means its consumer has just started: healthy now, without waiting about a second
    # for a first canary. The canary checks again once this pass is stale.
    passed_file(sender.hostname).touch()


@signals.worker_shutdown.connect(weak=False, dispatch_uid="project.forget_worker_pid")
def forget_worker_pid(sender: Any = None, **_: Any) -> None:
    """Remove the notes: a stopped worker is not ready."""
    from project.health.worker_probe import passed_file, pidfile

    pidfile(sender.hostname).unlink(missing_ok=True)
    passed_file(sender.hostname).unlink(missing_ok=True)


@signals.worker_process_shutdown.connect(weak=False, dispatch_uid="project.log_recycled")
def log_recycled_pool_process(pid: int = 0, exitcode: int = 0, **_: Any) -> None:
    """Say in the worker's log when a pool process exits to be replaced, and why."""
    if exitcode != EX_RECYCLE:
        return
    conf = current_celery_app.conf
    used_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cap_kib = conf.worker_max_memory_per_child
    if cap_kib and used_kib > cap_kib:
        reason = f"it used {used_kib} KiB, past CELERY_WORKER_MAX_MEMORY_PER_CHILD={cap_kib}"
    else:
        tasks = conf.worker_max_tasks_per_child
        reason = f"it ran CELERY_WORKER_MAX_TASKS_PER_CHILD={tasks} tasks"
    logger.warning("pool process %d replaced: %s", pid, reason)


def log_to_stdout(logger: logging.Logger, **_: Any) -> None:
    """Send Celery's log handlers to stdout, where the container runtime collects logs."""
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (
            sys.stderr,
            sys.__stderr__,
        ):
            handler.setStream(sys.stdout)


signals.after_setup_logger.connect(log_to_stdout, weak=False, dispatch_uid="project.log_stdout")
signals.after_setup_task_logger.connect(
    log_to_stdout, weak=False, dispatch_uid="project.task_log_stdout"
)
