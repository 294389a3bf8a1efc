"""A worker step that publishes what would otherwise never run: the outbox's and the broker's."""

import logging
import threading
import time
from typing import Any

from celery import bootsteps
from flask import Flask

from project import db
from project.celery_broker import is_redis_broker
from project.tasks.outbox import SWEEP_BATCH, publish_stranded
from project.tasks.redelivery import republish_lost

log = logging.getLogger(__name__)


class OutboxSweeper(bootsteps.StartStopStep):
    """Every OUTBOX_SWEEP_SECONDS publish records left unpublished; look for lost tasks too.

    The look for tasks the broker lost (project/tasks/redelivery.py) reads whole queues,
    so it runs each half TASK_LOST_AFTER_SECONDS only.
    """

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **_: Any) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(worker.app,), name="outbox-sweeper", daemon=True
        )
        self._thread.start()

    def stop(self, worker: Any) -> None:
        self._stopping.set()

    def _run(self, celery: Any) -> None:
        flask_app: Flask = celery.flask_app
        config = flask_app.config
        interval, grace = config["OUTBOX_SWEEP_SECONDS"], config["OUTBOX_GRACE_SECONDS"]
        lost_after = config["TASK_LOST_AFTER_SECONDS"]
        # Other brokers (RabbitMQ) hand back what a dead consumer took: nothing to look for.
        queues = set(celery.amqp.queues.consume_from) if is_redis_broker(celery) else set()
        next_lost_check = time.monotonic() + lost_after / 2
        with flask_app.app_context():
            while not self._stopping.wait(interval):
                try:
                    while publish_stranded(grace) == SWEEP_BATCH:
                        pass
                    if queues and time.monotonic() >= next_lost_check:
                        next_lost_check = time.monotonic() + lost_after / 2
                        republish_lost(celery, queues, lost_after)
                except Exception as error:  # database or broker down: try again next time
                    log.warning("outbox sweep or lost-task check failed, will retry: %s", error)
                finally:
                    db.session.remove()
