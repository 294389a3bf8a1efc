"""The task layer under load and faults: commit order, outbox, outcomes, cancel, poison."""

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPException
from pathlib import Path

import pytest
import redis
from flask import Flask
from sqlalchemy import func, select

from harness.processes import Process, start_gunicorn, start_worker, wait_for
from harness.servers import PrivateRedis
from project import db
from project.tasks.models import TaskRecord
from project.users.models import User
from tests.support import http, report

FAILPOINT_CONFIG = str(Path(__file__).parent / "die_before_publish.py")
# Publish stranded records quickly, so the test need not wait the production defaults.
FAST_OUTBOX = {"OUTBOX_SWEEP_SECONDS": "0.5", "OUTBOX_GRACE_SECONDS": "1"}
USERS = 300
RACERS = 50
CANCEL_QUEUED, CANCELLED = 20, 10
ORDINARY = 50


def create_users(base_url: str, count: int, prefix: str) -> list[tuple[int, dict | None]]:
    """POST `count` users, 8 at a time; return each (status, body); status 0 = no answer."""

    def one(i: int) -> tuple[int, dict | None]:
        name = f"{prefix}-{i}"
        try:
            status, _, body = http(
                "POST", f"{base_url}/users/", {"username": name, "email": f"{name}@example.com"}
            )
        # The web process died mid-request: before answering, or (another thread's request
        # killing it) between the headers and the body.
        except (OSError, HTTPException):
            return 0, None
        return status, body

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def post_with_key(url: str, body: dict, key: str) -> tuple[int, dict, str | None]:
    """POST with an Idempotency-Key; return status, JSON body and Idempotent-Replayed."""
    request = urllib.request.Request(
        url,
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "Idempotency-Key": key},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            replayed = response.headers.get("Idempotent-Replayed")
            return response.status, json.loads(response.read()), replayed
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), None


def queue_divide(base_url: str, operands: dict) -> str:
    """POST /tasks/divide; return the task id."""
    status, _, body = http("POST", f"{base_url}/tasks/divide", operands)
    assert status == 202, (status, body)
    return body["id"]


def get_task(base_url: str, task_id: str) -> dict:
    """GET /tasks/<id>; return the task."""
    return http("GET", f"{base_url}/tasks/{task_id}")[2]


def welcome_records(app: Flask) -> list[TaskRecord]:
    with app.app_context():
        return db.session.scalars(
            select(TaskRecord).where(TaskRecord.name.endswith(".send_welcome"))
        ).all()


def count_users(app: Flask, welcomed: bool = False) -> int:
    with app.app_context():
        query = select(func.count()).select_from(User)
        if welcomed:
            query = query.where(User.welcomed_at.is_not(None))
        return db.session.scalar(query)


def test_welcome_is_queued_only_after_commit_under_load(
    request: pytest.FixtureRequest,
    app: Flask,
    fault_server: str,
    fault_env: dict[str, str],
    log_dir: Path,
    workers: list[Process],
) -> None:
    workers.append(start_worker(fault_env, log_dir, concurrency=2))
    replies = create_users(fault_server, USERS, "load")
    assert [status for status, _ in replies] == [201] * USERS
    wait_for(lambda: count_users(app, welcomed=True) == USERS, 60, "every user to be welcomed")
    records = welcome_records(app)
    first_try = sum(r.state == "SUCCESS" and r.deliveries == 1 for r in records)
    missing_row = workers[0].output().count("UserMissing")

    # 50 requests for one username: one wins, the 49 losers must queue nothing.
    before = len(welcome_records(app))
    with ThreadPoolExecutor(RACERS) as pool:
        statuses = list(
            pool.map(
                lambda i: http(
                    "POST", f"{fault_server}/users/", {"username": "racer", "email": f"r{i}@x.io"}
                )[0],
                range(RACERS),
            )
        )
    queued_by_race = len(welcome_records(app)) - before
    report(
        request,
        f"commit order: users={USERS} welcomed={count_users(app, welcomed=True)} "
        f"first_try={first_try} missing_row={missing_row} race_winners={statuses.count(201)} "
        f"race_losers_409={statuses.count(409)} queued_by_race={queued_by_race}",
    )
    assert len(records) == USERS and first_try == USERS and missing_row == 0
    assert statuses.count(201) == 1 and statuses.count(409) == RACERS - 1
    assert queued_by_race == 1


def test_web_dying_between_commit_and_publish_loses_no_task(
    request: pytest.FixtureRequest,
    app: Flask,
    fault_env: dict[str, str],
    log_dir: Path,
    workers: list[Process],
) -> None:
    env = {**fault_env, **FAST_OUTBOX}
    server, base_url = start_gunicorn(env, log_dir, config=FAILPOINT_CONFIG)
    workers.append(start_worker(env, log_dir, concurrency=2))
    try:
        replies = create_users(base_url, 100, "crash")
    finally:
        server.stop()
    committed = count_users(app)
    died = [status for status, _ in replies].count(0)
    wait_for(lambda: count_users(app, welcomed=True) == committed, 60, "every user welcomed")
    stranded = sum(int(n) for n in re.findall(r"outbox: published (\d+) task", workers[0].output()))
    welcomed = count_users(app, welcomed=True)
    report(
        request,
        f"crash before publish: committed={committed} welcomed={welcomed} "
        f"lost={committed - welcomed} web_deaths={died} republished={stranded}",
    )
    assert died > 0 and stranded > 0, "the failpoint never fired"
    assert welcomed == committed


def test_outcomes_outlast_result_expiry_and_flushall(
    request: pytest.FixtureRequest,
    fault_server: str,
    fault_env: dict[str, str],
    private_redis: PrivateRedis,
    log_dir: Path,
    workers: list[Process],
) -> None:
    workers.append(start_worker({**fault_env, "CELERY_RESULT_EXPIRES": "2"}, log_dir))
    operands = [(i, 4) for i in range(8)] + [(1, 0), (2, 0)]
    ids = [queue_divide(fault_server, {"x": x, "y": y}) for x, y in operands]

    def finished() -> list[dict] | None:
        bodies = [get_task(fault_server, task_id) for task_id in ids]
        done = all(body["state"] in ("SUCCESS", "FAILURE") for body in bodies)
        return bodies if done else None

    before = wait_for(finished, 60, "every task to finish")
    time.sleep(2.5)  # past the results' expiry
    redis.Redis.from_url(private_redis.url).flushall()
    after = [get_task(fault_server, task_id) for task_id in ids]
    kept = sum(
        (a["state"], a.get("result"), a.get("error"))
        == (b["state"], b.get("result"), b.get("error"))
        for a, b in zip(after, before, strict=True)
    )
    report(request, f"outcomes after expiry and FLUSHALL: tasks={len(ids)} kept={kept}")
    assert kept == len(ids)
    assert [a["state"] for a in after] == ["SUCCESS"] * 8 + ["FAILURE"] * 2
    assert after[-1]["error"]["type"] == "ZeroDivisionError"


def test_cancelled_tasks_never_run_even_when_cancelled_with_workers_down(
    request: pytest.FixtureRequest,
    fault_server: str,
    fault_env: dict[str, str],
    log_dir: Path,
    workers: list[Process],
) -> None:
    ids = [queue_divide(fault_server, {"x": i, "y": 1}) for i in range(CANCEL_QUEUED)]
    cancelled = ids[::2]
    for task_id in cancelled:  # no worker runs: only the records know
        status, _, body = http("POST", f"{fault_server}/tasks/{task_id}/cancel")
        assert (status, body["state"]) == (202, "REVOKED")
    workers.append(start_worker(fault_env, log_dir, concurrency=2))
    kept = [task_id for task_id in ids if task_id not in cancelled]

    def states() -> list[str] | None:
        found = [get_task(fault_server, task_id)["state"] for task_id in kept]
        return found if set(found) == {"SUCCESS"} else None

    wait_for(states, 60, "the tasks not cancelled to succeed")
    wait_for(lambda: workers[0].output().count("ignored") >= CANCELLED, 30, "skips logged")
    ran = set(re.findall(r"divide\[([^\]]+)\] succeeded", workers[0].output()))
    after = [get_task(fault_server, task_id)["state"] for task_id in cancelled]
    report(
        request,
        f"cancel while workers down: queued={CANCEL_QUEUED} cancelled={CANCELLED} "
        f"ran={len(ran)} cancelled_that_ran={len(ran & set(cancelled))}",
    )
    assert ran == set(kept)
    assert after == ["REVOKED"] * CANCELLED
    assert http("POST", f"{fault_server}/tasks/{kept[0]}/cancel")[0] == 409


def test_cancelling_a_running_divide_stops_it_within_2_s(
    request: pytest.FixtureRequest,
    fault_server: str,
    fault_env: dict[str, str],
    log_dir: Path,
    workers: list[Process],
) -> None:
    workers.append(start_worker({**fault_env, "DIVIDE_DELAY_SECONDS": "8"}, log_dir))
    task_id = queue_divide(fault_server, {"x": 1, "y": 2})
    wait_for(
        lambda: get_task(fault_server, task_id)["state"] == "STARTED",
        30,
        "the task to start",
    )
    cancelled_at = time.monotonic()
    assert http("POST", f"{fault_server}/tasks/{task_id}/cancel")[0] == 202
    wait_for(lambda: f"[{task_id}] ignored" in workers[0].output(), 5, "the task to stop")
    stopped_s = time.monotonic() - cancelled_at
    body = get_task(fault_server, task_id)
    report(request, f"cancel running divide: stopped_s={stopped_s:.2f} state={body['state']}")
    assert stopped_s < 2 and body["state"] == "REVOKED"
    assert f"divide[{task_id}] succeeded" not in workers[0].output()


def test_a_task_that_kills_its_process_is_stopped_after_max_deliveries(
    request: pytest.FixtureRequest,
    app_with,
    fault_server: str,
    fault_env: dict[str, str],
    log_dir: Path,
    workers: list[Process],
) -> None:
    workers.append(
        start_worker(fault_env, log_dir, concurrency=2, extra=("-I", "tests.worker_tasks"))
    )
    app = app_with(
        **{key: fault_env[key] for key in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")}
    )
    from tests.worker_tasks import kill_own_process

    with app.app_context():
        poison_id = kill_own_process.delay().id
    ordinary = [queue_divide(fault_server, {"x": i, "y": 2}) for i in range(ORDINARY)]

    def final(task_id: str) -> dict | None:
        body = get_task(fault_server, task_id)
        return body if body["state"] in ("SUCCESS", "FAILURE") else None

    poison = wait_for(lambda: final(poison_id), 120, "the poison task to be stopped")
    outcomes = [wait_for(lambda t=task_id: final(t), 60, "ordinary tasks") for task_id in ordinary]
    succeeded = sum(body["state"] == "SUCCESS" for body in outcomes)
    deaths = workers[0].output().count("WorkerLostError")
    report(
        request,
        f"poison message: deliveries={poison['deliveries']} state={poison['state']} "
        f"process_deaths={deaths} ordinary={ORDINARY} ordinary_succeeded={succeeded}",
    )
    assert poison["state"] == "FAILURE" and poison["error"]["type"] == "PoisonMessage"
    assert "died each time" in poison["error"]["message"]
    assert poison["deliveries"] == 4  # three that died, the fourth refused
    assert succeeded == ORDINARY


def test_idempotency_key_answers_concurrent_retries_once(
    request: pytest.FixtureRequest, app: Flask, fault_server: str
) -> None:
    key = uuid.uuid4().hex

    def submit(body: dict) -> tuple[int, dict, str | None]:
        return post_with_key(f"{fault_server}/tasks/divide", body, key)

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda _: submit({"x": 1, "y": 2}), range(20)))
    ids = {body["id"] for _, body, _ in replies}
    with app.app_context():
        records = db.session.scalar(select(func.count()).select_from(TaskRecord))
    replayed = [flag for _, _, flag in replies].count("true")
    again = submit({"x": 1, "y": 2})
    other = submit({"x": 2, "y": 2})
    report(
        request,
        f"idempotency: concurrent=20 task_ids={len(ids)} records={records} "
        f"replayed={replayed} other_body={other[0]}",
    )
    assert {status for status, _, _ in replies} == {202}
    assert len(ids) == 1 and records == 1 and replayed == 19
    assert again[:2] == replies[0][:2] and again[2] == "true"
    assert other[0] == 422
