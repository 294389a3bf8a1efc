"""The tasks API against a real worker, Redis and PostgreSQL."""

from collections.abc import Callable

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from harness.processes import Process, free_port, wait_for
from project import db
from project.tasks.models import TaskRecord
from project.users.tasks import divide
from tests.support import assert_problem


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


def test_broker_down_returns_503_and_keeps_no_record(app_with: Callable[..., Flask]) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = app_with(CELERY_BROKER_URL=dead, CELERY_RESULT_BACKEND=dead)
    body = assert_problem(app.test_client().post("/tasks/divide", json={"x": 1, "y": 2}), 503)
    assert "queue" in body["detail"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(TaskRecord)) == 0


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
    from project import db
    from project.tasks.models import TaskRecord

    with app.app_context():  # recorded but never queued: it stays PENDING
        db.session.add(TaskRecord(id="never-queued", name="divide", args=[1, 1]))
        db.session.commit()
    assert client.get("/tasks/never-queued?wait=0.2").get_json()["state"] == "PENDING"


@pytest.mark.parametrize("wait", ["-1", "11", "nan", "soon", "inf"])
def test_bad_wait_returns_422(client: FlaskClient, wait: str) -> None:
    assert_problem(client.get(f"/tasks/whatever?wait={wait}"), 422)
