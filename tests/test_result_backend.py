"""The Redis result backend on a real Redis: one script stores a result, SUCCESS stays."""

import uuid

import redis
from flask import Flask

from harness.processes import wait_for
from project.celery_backend import SUCCEEDED_PREFIX


def test_a_result_is_stored_with_its_expiry_and_announced(app: Flask, redis_url: str) -> None:
    backend = app.extensions["celery"].backend
    task_id = str(uuid.uuid4())
    key = backend.get_key_for_task(task_id)
    listener = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(key)

    backend.store_result(task_id, 0.5, "SUCCESS")

    meta = backend.get_task_meta(task_id)
    assert (meta["status"], meta["result"], meta["task_id"]) == ("SUCCESS", 0.5, task_id)
    store = redis.Redis.from_url(redis_url)
    assert 0 < store.ttl(key) <= app.config["CELERY_RESULT_EXPIRES"]
    # What the script's SUCCESS check reads: the stored JSON starts with the status.
    assert store.get(key).startswith(SUCCEEDED_PREFIX.encode())
    announced = wait_for(lambda: listener.get_message(timeout=0.1), 5, "the result's announcement")
    assert b'"SUCCESS"' in announced["data"]
    listener.close()


def test_a_late_duplicate_delivery_cannot_overwrite_success(app: Flask) -> None:
    backend = app.extensions["celery"].backend
    task_id = str(uuid.uuid4())
    backend.store_result(task_id, None, "STARTED")
    assert backend.get_task_meta(task_id)["status"] == "STARTED"  # other states are replaced

    backend.store_result(task_id, 2.0, "SUCCESS")
    backend.store_result(task_id, ZeroDivisionError("late copy"), "FAILURE")
    backend.store_result(task_id, None, "STARTED")

    meta = backend.get_task_meta(task_id)
    assert (meta["status"], meta["result"]) == ("SUCCESS", 2.0)
