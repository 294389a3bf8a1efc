"""Tasks only the tests' workers load (`--include tests.worker_tasks`)."""

import os
import signal
import time

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


@shared_task
def kill_own_process() -> None:
    """Die as a segfault or the OOM killer would end the pool process: no exception, no ack."""
    os.kill(os.getpid(), signal.SIGKILL)


@shared_task
def hold(seconds: float) -> float:
    """Keep a pool process busy for `seconds` (no cancellation checks)."""
    time.sleep(seconds)
    return seconds


_leaked: list[bytes] = []


@shared_task
def leak(megabytes: int) -> int:
    """Keep `megabytes` more memory for the life of the pool process; return its pid."""
    _leaked.append(os.urandom(megabytes * 1024 * 1024))
    return os.getpid()
