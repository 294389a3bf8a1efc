"""Refuse new work while too many tasks wait in the broker's queue (MAX_QUEUED_TASKS)."""

import logging

from celery import Celery
from flask import current_app
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from project.celery_broker import queue_keys
from project.errors import Problem

# How long a client refused for a full queue should wait before trying again.
RETRY_AFTER_SECONDS = 10

log = logging.getLogger(__name__)


def queue_length(celery: Celery) -> int | None:
    """Count the tasks waiting in a Celery app's default queue; None if not a Redis broker.

    Reads the Redis lists kombu keeps per queue and priority (one round trip, pipelined).
    Tasks a worker has taken but not yet acknowledged are running, not waiting.
    """
    queue = celery.conf.task_default_queue
    with celery.pool.acquire(block=True) as connection:
        channel = connection.default_channel
        if not hasattr(channel, "client"):
            return None
        pipeline = channel.client.pipeline(transaction=False)
        for key in queue_keys(channel, queue):
            pipeline.llen(key)  # kombu prefixes LLEN's key itself
        return sum(pipeline.execute())


def waiting_tasks() -> int | None:
    """Count the tasks waiting in this app's queue; None when the broker cannot say."""
    try:
        return queue_length(current_app.extensions["celery"])
    except (RedisError, BrokerError, OSError) as error:
        # The outbox keeps what is accepted meanwhile; refusing would add nothing.
        log.warning("queue length unknown, accepting: %s", error)
        return None


def refuse_when_queue_full() -> None:
    """Answer 503 with Retry-After, queueing nothing, while MAX_QUEUED_TASKS tasks wait."""
    limit = current_app.config["MAX_QUEUED_TASKS"]
    waiting = waiting_tasks()
    if waiting is not None and waiting >= limit:
        raise Problem(
            503,
            "Service Unavailable",
            f"{waiting} tasks are waiting, the most this service queues; try again later.",
            "queue-full",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
