"""The figures read at scrape time: queue depth and age, task records by state, workers."""

import json
import time
from collections.abc import Iterator

from flask import Flask
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from project import db
from project.tasks.models import TaskRecord

WORKER_PING_SECONDS = 0.5


class StackCollector(Collector):
    """Ask Redis, PostgreSQL and the workers at each scrape; skip what does not answer."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the queue, task and worker figures (a failing source yields nothing)."""
        with self.app.app_context():
            for family in (self._queues, self._tasks, self._workers):
                try:
                    yield from family()
                except Exception as error:  # a scrape while Redis or PostgreSQL is down answers
                    name = family.__name__.lstrip("_")
                    self.app.logger.warning("metrics: %s skipped (%r)", name, error)

    def _queues(self) -> Iterator[GaugeMetricFamily]:
        celery = self.app.extensions["celery"]
        queue = self.app.config["CELERY_TASK_DEFAULT_QUEUE"]
        with celery.connection_for_read() as connection:
            client = connection.default_channel.client
            length = client.llen(queue)
            oldest = client.lindex(queue, -1)  # kombu pushes left and pops right
        waiting = GaugeMetricFamily(
            "celery_queue_length", "Tasks waiting in the queue (not yet taken by a worker).",
            labels=["queue"],
        )  # fmt: skip
        waiting.add_metric([queue], length)
        yield waiting
        age = GaugeMetricFamily(
            "celery_queue_oldest_task_age_seconds",
            "How long the task next in line has waited since it was queued (0: none waits).",
            labels=["queue"],
        )
        age.add_metric([queue], self._age_of(oldest))
        yield age

    def _age_of(self, message: bytes | None) -> float:
        """Seconds since the queued message's task was recorded (0 without one)."""
        if message is None:
            return 0.0
        task_id = json.loads(message).get("headers", {}).get("id")
        created = db.session.scalar(select(TaskRecord.created_at).where(TaskRecord.id == task_id))
        return max(0.0, time.time() - created.timestamp()) if created else 0.0

    def _tasks(self) -> Iterator[GaugeMetricFamily]:
        counts = db.session.execute(
            select(TaskRecord.state, func.count()).group_by(TaskRecord.state)
        ).all()
        tasks = GaugeMetricFamily(
            "app_task_records", "Task records by state (kept TASK_RETENTION_DAYS).",
            labels=["state"],
        )  # fmt: skip
        for state, count in counts:
            tasks.add_metric([state], count)
        yield tasks

    def _workers(self) -> Iterator[GaugeMetricFamily]:
        replies = self.app.extensions["celery"].control.ping(timeout=WORKER_PING_SECONDS)
        yield GaugeMetricFamily(
            "celery_workers", "Workers that answered a ping just now.", value=len(replies)
        )
