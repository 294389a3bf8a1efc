"""Background tasks of the users feature."""

import math
import time

from celery import shared_task
from celery.utils.log import get_task_logger
from flask import current_app

logger = get_task_logger(__name__)


# acks_late and reject_on_worker_lost come from the config: divide is idempotent, so
# running it again after a crashed worker is safe.
@shared_task(throws=(ZeroDivisionError, OverflowError))  # expected: logged without a traceback
def divide(x: float, y: float) -> float:
    """Return x / y after simulating slow work (DIVIDE_DELAY_SECONDS)."""
    delay = current_app.config["DIVIDE_DELAY_SECONDS"]
    logger.info("dividing %r by %r after %ss", x, y, delay)
    if delay:
        time.sleep(delay)
    result = x / y
    if not math.isfinite(result):
        # 1e308 / 1e-308 is inf in Python, which JSON cannot carry: fail it visibly instead.
        raise OverflowError(f"{x!r} / {y!r} is too large for a JSON number")
    return result
