"""The tasks API against a real worker, Redis and PostgreSQL."""

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from celery import Celery
from flask import Flask
from flask.testing import FlaskClient
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import func, select, update

from harness.processes import Process, free_port, start_gunicorn, start_worker, wait_for
from project import db
from project.celery_broker import queue_keys
from project.tasks.models import TaskRecord
from project.tasks.outbox import publish_stranded
from project.users.tasks import divide
from tests.support import account, assert_problem, http, report

BROKER_SETTINGS = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


def follow(client: FlaskClient, url: str, timeout: float = 30) -> dict:
    """Poll a task until it reaches a final state, as the page does."""

    def final() -> dict | None:
        body = client.get(url).get_json()
        return body if body["state"] in ("SUCCESS", "FAILURE") else None

    return wait_for(final, timeout, f"{url} to finish")


def queue_length(redis_url: str) -> int:
    return redis.Redis.from_url(redis_url).llen("celery")


def test_divide_returns_202_then_success(client: FlaskClient, worker: Process) -> None:
    response = client.post("/tasks/divide", json={"x": 1, "y": 2})
    assert response.status_code == 202
    body = response.get_json()
    assert body["name"] == "divide" and body["state"] == "PENDING"
    assert response.headers["Location"] == body["url"] == f"/tasks/{body['id']}"
    done = follow(client, body["url"])
    assert done["state"] == "SUCCESS"
    assert done["result"] == 0.5
    assert "error" not in done


def test_divide_by_zero_fails_with_error_not_traceback(
    client: FlaskClient, worker: Process
) -> None:
    url = client.post("/tasks/divide", json={"x": 1, "y": 0}).get_json()["url"]
    done = follow(client, url)
    assert done["state"] == "FAILURE"
    assert done["error"] == {"type": "ZeroDivisionError", "message": "division by zero"}
    assert "Traceback" not in str(done)


@pytest.mark.parametrize(
    "body",
    [
        '{"x": 1}',
        '{"y": 1}',
        '{"x": "1", "y": 2}',
        '{"x": true, "y": 2}',
        '{"x": null, "y": 2}',
        '{"x": NaN, "y": 2}',
        '{"x": Infinity, "y": 2}',
        '{"x": 1, "y": -Infinity}',
        '{"x": [1], "y": 2}',
        "[1, 2]",
        '"1/2"',
    ],
)
def test_invalid_divide_returns_422_and_queues_nothing(
    client: FlaskClient, redis_url: str, body: str
) -> None:
    before = queue_length(redis_url)
    response = client.post("/tasks/divide", data=body, content_type="application/json")
    assert_problem(response, 422)
    assert queue_length(redis_url) == before
    assert client.get("/tasks/").get_json()["items"] == []


def test_divide_body_errors_are_400_and_415(client: FlaskClient) -> None:
    assert_problem(client.post("/tasks/divide", data="{", content_type="application/json"), 400)
    assert_problem(client.post("/tasks/divide", data="x=1&y=2"), 415)


def test_unknown_task_id_returns_404(client: FlaskClient) -> None:
    assert_problem(client.get("/tasks/0c7b6d1e-0000-4000-8000-000000000000"), 404)


def test_list_tasks_newest_first_with_pagination(client: FlaskClient, worker: Process) -> None:
    ids = [client.post("/tasks/divide", json={"x": i, "y": 1}).get_json()["id"] for i in range(3)]
    first = client.get("/tasks/?limit=2").get_json()
    assert [item["id"] for item in first["items"]] == ids[::-1][:2]
    second = client.get(first["next"]).get_json()
    assert [item["id"] for item in second["items"]] == ids[:1]
    assert second["next"] is None
    assert_problem(client.get("/tasks/?after=unknown"), 422)
    assert_problem(client.get("/tasks/?limit=0"), 422)


def test_task_queued_from_code_is_listed(app: Flask, client: FlaskClient, worker: Process) -> None:
    with app.app_context():
        result = divide.delay(3, 4)
    listed = client.get("/tasks/").get_json()["items"]
    assert [item["id"] for item in listed] == [result.id]
    assert follow(client, f"/tasks/{result.id}")["result"] == 0.75


def test_only_this_services_celery_app_records_its_tasks(app: Flask, redis_url: str) -> None:
    other = Celery("other-service", broker=redis_url, set_as_current=False)
    queue = f"test-{uuid.uuid4().hex}"  # no worker reads it: neither task runs
    with app.app_context():
        theirs = other.send_task("billing.charge", [1], queue=queue)
        ours = divide.apply_async((1, 2), queue=queue)
        recorded = set(db.session.scalars(select(TaskRecord.id)))
    redis.Redis.from_url(redis_url).delete(queue)
    assert ours.id in recorded
    assert theirs.id not in recorded  # another app's task: this service would show it PENDING


def test_only_a_publish_its_record_can_repeat_is_republishable(
    app_with: Callable[..., Flask], redis_url: str
) -> None:
    # Queues no worker reads (this run's worker reads "celery"): none of these may run,
    # or a linked task's publish would write a record after this test.
    default, other = (f"test-{uuid.uuid4().hex}" for _ in range(2))
    app = app_with(CELERY_TASK_DEFAULT_QUEUE=default)
    with app.app_context():
        published = {
            "delay": divide.delay(1, 2).id,
            "kwargs": divide.delay(x=1, y=2).id,
            "countdown": divide.apply_async((1, 2), countdown=60).id,
            "expires": divide.apply_async((1, 2), expires=60).id,
            "time limit": divide.apply_async((1, 2), time_limit=5).id,
            "own queue": divide.apply_async((1, 2), queue=other).id,
            "linked": divide.apply_async((1, 2), link=divide.s(2)).id,
            "chained": (divide.s(1, 2) | divide.s(2)).apply_async().parent.id,
            "own header": divide.apply_async((1, 2), headers={"tenant": "a"}).id,
            "shadow name": divide.apply_async((1, 2), shadow="other").id,
        }
    response = app.test_client().post("/tasks/divide", json={"x": 1, "y": 2})
    published["outbox"] = response.get_json()["id"]
    with app.app_context():
        records = select(TaskRecord.id, TaskRecord.republishable)
        republishable = dict(db.session.execute(records).all())
    with app.extensions["celery"].pool.acquire(block=True) as connection:
        channel = connection.default_channel
        keys = queue_keys(channel, default) + queue_keys(channel, other)
    assert redis.Redis.from_url(redis_url).delete(*keys) >= 2  # both queues held messages
    plain = {how for how, task_id in published.items() if republishable[task_id]}
    assert plain == {"delay", "outbox"}


def test_a_publish_that_failed_is_never_republished(app_with: Callable[..., Flask]) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    broker_down = app_with(CELERY_BROKER_URL=dead, CELERY_RESULT_BACKEND=dead)
    with broker_down.app_context():
        with pytest.raises(BrokerError):
            divide.delay(1, 2)
        records = db.session.execute(select(TaskRecord.state, TaskRecord.republishable)).all()
    # Its caller was told it failed, and may queue it again: the record must not.
    assert records == [("PENDING", False)]


def test_broker_down_keeps_the_task_in_the_outbox_until_published(
    app_with: Callable[..., Flask], migrated: dict[str, str], worker: Process
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    broker_down = app_with(CELERY_BROKER_URL=dead, CELERY_RESULT_BACKEND=dead)
    response = broker_down.test_client().post("/tasks/divide", json={"x": 1, "y": 2})
    assert response.status_code == 202  # recorded in the same commit: it will run
    task_id = response.get_json()["id"]
    # Celery reads CELERY_BROKER_URL from the environment whenever it connects.
    broker_up = app_with(**{name: migrated[name] for name in BROKER_SETTINGS})
    with broker_up.app_context():
        record = db.session.scalar(select(TaskRecord).where(TaskRecord.id == task_id))
        assert record.published_at is None
        # What every worker's outbox sweeper does every OUTBOX_SWEEP_SECONDS.
        assert publish_stranded(older_than_seconds=0) == 1
        assert publish_stranded(older_than_seconds=0) == 0
    assert follow(broker_up.test_client(), f"/tasks/{task_id}")["result"] == 0.5


def test_database_down_returns_503_problem(app_with: Callable[..., Flask]) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    client = app_with(DATABASE_URL=dead).test_client()
    assert_problem(client.get("/users/1"), 503)
    assert_problem(client.post("/tasks/divide", json={"x": 1, "y": 2}), 503)


@pytest.mark.parametrize(
    ("x", "y", "state", "outcome"),
    [
        (1e308, 1e-308, "FAILURE", "OverflowError"),
        (1, -0.0, "FAILURE", "ZeroDivisionError"),
        (-0.0, 1, "SUCCESS", -0.0),
        (10**299, 1e-10, "FAILURE", "OverflowError"),
    ],
)
def test_numbers_that_break_division_end_in_a_clear_state(
    client: FlaskClient, worker: Process, x: float, y: float, state: str, outcome: object
) -> None:
    url = client.post("/tasks/divide", json={"x": x, "y": y}).get_json()["url"]
    done = follow(client, url)
    assert done["state"] == state
    if state == "SUCCESS":
        assert done["result"] == outcome
    else:
        assert done["error"]["type"] == outcome


def test_integers_too_long_never_reach_the_queue(client: FlaskClient, redis_url: str) -> None:
    before = queue_length(redis_url)
    body = assert_problem(client.post("/tasks/divide", json={"x": 10**300, "y": 1}), 422)
    assert body["errors"] == {"x": "must have fewer than 300 digits"}
    huge = '{"x": ' + "9" * 5000 + ', "y": 1}'
    assert_problem(client.post("/tasks/divide", data=huge, content_type="application/json"), 400)
    assert queue_length(redis_url) == before


def test_wait_answers_as_soon_as_the_task_finishes(client: FlaskClient, worker: Process) -> None:
    url = client.post("/tasks/divide", json={"x": 9, "y": 3}).get_json()["url"]
    body = client.get(f"{url}?wait=10").get_json()
    assert (body["state"], body["result"]) == ("SUCCESS", 3.0)


def test_wait_gives_the_current_state_when_time_runs_out(client: FlaskClient, app) -> None:
    with app.app_context():  # recorded but never queued: it stays PENDING
        db.session.add(TaskRecord(id="never-queued", name="divide", args=[1, 1]))
        db.session.commit()
    assert client.get("/tasks/never-queued?wait=0.2").get_json()["state"] == "PENDING"


@pytest.mark.parametrize("wait", ["-1", "11", "nan", "soon", "inf"])
def test_bad_wait_returns_422(client: FlaskClient, wait: str) -> None:
    assert_problem(client.get(f"/tasks/whatever?wait={wait}"), 422)


def add_record(app: Flask, task_id: str, state: str = "PENDING", **values) -> None:
    """Insert a task record directly, as if the task had got that far."""
    with app.app_context():
        db.session.add(
            TaskRecord(id=task_id, name="project.users.tasks.divide", args=[1, 1], state=state)
        )
        db.session.flush()
        if values:
            db.session.execute(update(TaskRecord).where(TaskRecord.id == task_id).values(**values))
        db.session.commit()


def test_a_finished_record_answers_without_redis(app: Flask, client: FlaskClient) -> None:
    add_record(app, "done", "SUCCESS", result=7, finished_at=datetime.now(UTC))
    add_record(app, "broke", "FAILURE", error={"type": "ValueError", "message": "no"})
    assert client.get("/tasks/done?wait=5").get_json()["result"] == 7  # no wait: it is over
    assert client.get("/tasks/broke").get_json()["error"] == {"type": "ValueError", "message": "no"}


def test_cancel_answers_202_then_409_once_finished(app: Flask, client: FlaskClient) -> None:
    add_record(app, "queued")
    add_record(app, "done", "SUCCESS", result=1)
    response = client.post("/tasks/queued/cancel")
    assert (response.status_code, response.get_json()["state"]) == (202, "REVOKED")
    assert client.post("/tasks/queued/cancel").status_code == 202  # cancelling twice is fine
    assert client.get("/tasks/queued").get_json()["state"] == "REVOKED"
    assert_problem(client.post("/tasks/done/cancel"), 409)
    assert_problem(client.post("/tasks/unknown/cancel"), 404)


def test_list_filters_by_state_and_name(app: Flask, client: FlaskClient) -> None:
    for n in range(3):
        add_record(app, f"ok-{n}", "SUCCESS", result=n)
    add_record(app, "failed", "FAILURE", error={"type": "E", "message": "m"})
    page = client.get("/tasks/?state=SUCCESS&name=divide&limit=2").get_json()
    assert [item["id"] for item in page["items"]] == ["ok-2", "ok-1"]
    assert "state=SUCCESS" in page["next"] and "name=divide" in page["next"]
    rest = client.get(page["next"]).get_json()
    assert [item["id"] for item in rest["items"]] == ["ok-0"]
    assert (
        client.get("/tasks/?name=project.users.tasks.divide&state=FAILURE").get_json()["items"][0][
            "id"
        ]
        == "failed"
    )
    assert client.get("/tasks/?name=send_welcome").get_json()["items"] == []
    assert_problem(client.get("/tasks/?state=LOST"), 422)


def test_idempotency_key_replays_the_first_reply(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "retry-1"}
    first = client.post("/tasks/divide", json={"x": 1, "y": 2}, headers=headers)
    again = client.post("/tasks/divide", json={"y": 2, "x": 1}, headers=headers)  # same JSON
    assert (again.status_code, again.get_json()) == (first.status_code, first.get_json())
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert_problem(client.post("/tasks/divide", json={"x": 2, "y": 2}, headers=headers), 422)
    assert len(client.get("/tasks/").get_json()["items"]) == 1
    bad_key = {"Idempotency-Key": "has space"}
    assert_problem(client.post("/tasks/divide", json={"x": 1, "y": 2}, headers=bad_key), 400)


def test_finished_tasks_are_listed_without_redis(
    app: Flask, app_with: Callable[..., Flask]
) -> None:
    add_record(app, "done", "SUCCESS", result=3)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = app_with(CELERY_BROKER_URL=dead, CELERY_RESULT_BACKEND=dead).test_client()
    items = client.get("/tasks/").get_json()["items"]
    assert [(item["id"], item["state"], item["result"]) for item in items] == [
        ("done", "SUCCESS", 3)
    ]


@pytest.mark.usefixtures("app")  # empties the tables afterwards
def test_a_full_queue_refuses_new_tasks_and_keeps_the_queued_ones(
    app_with: Callable[..., Flask], redis_url: str
) -> None:
    # A queue of its own, which no worker reads: what is queued stays there.
    queue = f"queue-limit-{uuid.uuid4().hex[:8]}"
    app = app_with(MAX_QUEUED_TASKS="3", CELERY_TASK_DEFAULT_QUEUE=queue)
    client = app.test_client()
    broker = redis.Redis.from_url(redis_url)

    def records() -> int:
        with app.app_context():
            return db.session.scalar(select(func.count()).select_from(TaskRecord))

    before = records()
    try:
        accepted = [client.post("/tasks/divide", json={"x": i, "y": 1}) for i in range(3)]
        assert [response.status_code for response in accepted] == [202, 202, 202]
        refused = client.post("/tasks/divide", json={"x": 9, "y": 1})
        assert_problem(refused, 503)
        assert refused.get_json()["type"] == "/problems/queue-full"
        assert refused.headers["Retry-After"] == "10"
        assert broker.llen(queue) == 3  # nothing queued, nothing lost
        assert records() == before + 3
        broker.lpop(queue)  # one fewer waits: the next is accepted again
        assert client.post("/tasks/divide", json={"x": 9, "y": 1}).status_code == 202
    finally:
        broker.delete(queue)


def test_past_the_queue_limit_nothing_is_queued_and_nothing_queued_is_lost(
    request: pytest.FixtureRequest, app: Flask, migrated: dict[str, str], log_dir: Path
) -> None:
    # Workers stopped (none reads this queue yet), MAX_QUEUED_TASKS=50, 80 submissions.
    env = {
        **migrated,
        "MAX_QUEUED_TASKS": "50",
        "CELERY_TASK_DEFAULT_QUEUE": f"queue-limit-{uuid.uuid4().hex[:8]}",
    }
    server, base_url = start_gunicorn(env, log_dir)
    worker = None
    try:
        answers = [http("POST", f"{base_url}/tasks/divide", {"x": i, "y": 4}) for i in range(80)]
        statuses = [status for status, _, _ in answers]
        assert (statuses.count(202), statuses.count(503)) == (50, 30)
        assert all(body["type"] == "/problems/queue-full" for s, _, body in answers if s == 503)
        expected = {body["id"]: i / 4 for i, (s, _, body) in enumerate(answers) if s == 202}
        started = time.monotonic()
        worker = start_worker(env, log_dir)
        tally = account(base_url, expected, [worker], started, timeout=60)
        report(request, tally.line("queue limit 50, 80 submitted, then a worker"))
        assert (tally.succeeded, tally.lost, tally.failed) == (50, 0, 0), tally.lost_ids
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
