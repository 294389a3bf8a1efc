"""The worker's canary: a task its healthcheck sends to this worker alone (worker_probe)."""

from celery import Task, shared_task

CANARY_KEY = "worker-canary:{nonce}"


# A plain Celery task, not FlaskTask: it proves the worker receives and runs tasks, and
# must not fail (restarting the worker) because the database is down.
@shared_task(base=Task, ignore_result=True, acks_late=False)
def canary(nonce: str) -> None:
    """Answer the healthcheck: write its nonce back to Redis for a minute."""
    canary.app.backend.client.set(CANARY_KEY.format(nonce=nonce), "1", ex=60)
