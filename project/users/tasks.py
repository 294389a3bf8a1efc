"""Background tasks of the users feature."""

import math

from celery import shared_task
from celery.utils.log import get_task_logger
from flask import current_app

from project import db
from project.tasks.lifecycle import sleep_unless_cancelled
from project.tasks.models import utc_now
from project.users.models import User

logger = get_task_logger(__name__)


# acks_late and reject_on_worker_lost come from the config: divide is idempotent, so
# running it again after a crashed worker is safe.
@shared_task(throws=(ZeroDivisionError, OverflowError))  # expected: logged without a traceback
def divide(x: float, y: float) -> float:
    """Return x / y after simulating slow work (DIVIDE_DELAY_SECONDS)."""
    delay = current_app.config["DIVIDE_DELAY_SECONDS"]
    logger.info("dividing %r by %r after %ss", x, y, delay)
    sleep_unless_cancelled(delay)  # POST /tasks/<id>/cancel stops it within a step
    result = x / y
    if not math.isfinite(result):
        # 1e308 / 1e-308 is inf in Python, which JSON cannot carry: fail it visibly instead.
        raise OverflowError(f"{x!r} / {y!r} is too large for a JSON number")
    return result


class UserMissing(LookupError):
    """The user a task was queued for does not exist (deleted, or never committed)."""


@shared_task(throws=(UserMissing,))
def send_welcome(user_id: int) -> None:
    """Welcome a new user (a log line stands in for the email); idempotent: once per user."""
    user = db.session.get(User, user_id)
    if user is None:
        raise UserMissing(f"there is no user {user_id}")
    if user.welcomed_at is None:
        logger.info("welcome email to %s <%s>", user.username, user.email)
        user.welcomed_at = utc_now()
        db.session.commit()
