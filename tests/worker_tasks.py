"""Tasks only the tests' workers load (`--include tests.worker_tasks`)."""

from celery import shared_task
from sqlalchemy import text

from project import db


@shared_task
def touch_database(fail: bool) -> int:
    """Open a transaction in the task's session, then return or raise inside it."""
    value = db.session.execute(text("SELECT 1")).scalar_one()
    if fail:
        raise RuntimeError("failing with a transaction open")
    return value
