"""Baseline: a bare Celery app with default settings, on the same Redis as the product."""

import os

from celery import Celery

url = os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0")
celery = Celery("bare", broker=url, backend=url, set_as_current=False)
celery.conf.broker_connection_retry_on_startup = True
# A queue of its own, so this worker and the product's can run side by side.
celery.conf.task_default_queue = "bare"


@celery.task(name="bare.divide")
def divide(x: float, y: float) -> float:
    """Return x / y, nothing else."""
    return x / y


@celery.task(name="bare.send_welcome")
def send_welcome(user_id: int) -> None:
    """Stand-in for the product's welcome task: the baseline only queues it."""
