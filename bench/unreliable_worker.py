"""The product's Celery app without its at-least-once settings (early ack, prefetch 4).

Only to measure what those settings cost: `celery -A bench.unreliable_worker.celery worker`.
"""

from app import celery

# Before the worker finalizes the app, so the tasks pick these up.
celery.conf.task_acks_late = False
celery.conf.task_reject_on_worker_lost = False
celery.conf.worker_prefetch_multiplier = 4
