"""Baseline: a minimal Flask app doing the same work as the product's endpoints, no more."""

import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Callable

import redis
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult
from flask import Flask, Response, abort, g, jsonify, request
from sqlalchemy import Connection, create_engine, text

from bench.bare_celery import celery, divide, send_welcome
from project.config import DEFAULT_MAX_QUEUED_TASKS
from project.database import ping_closed_connections
from project.security import SecurityHeaders
from project.tasks.queue_limit import queue_length

app = Flask(__name__)
# The product's security headers on every response, added the way the product adds them.
app.wsgi_app = SecurityHeaders(app.wsgi_app)
url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg2://", 1)
engine = create_engine(url)
# What the product's GET, HEAD and OPTIONS requests read on: no BEGIN, no ROLLBACK.
reads = create_engine(url, isolation_level="AUTOCOMMIT")
for pooled in (engine, reads):
    ping_closed_connections(pooled)  # the product's connection check: no round trip
# As the product's bookkeeping engine: autocommit, commits not waiting for the disk.
bookkeeping = create_engine(
    url, isolation_level="AUTOCOMMIT", connect_args={"options": "-c synchronous_commit=off"}
)
RECORD = text(
    "INSERT INTO task_records (id, name, args, created_at) VALUES (:id, :name, :args, now())"
)
MARK_PUBLISHED = text("UPDATE task_records SET published_at = now() WHERE id = :id")
TOKEN_SECRET_HASH = text(
    "SELECT name, secret_hash FROM api_tokens WHERE lookup = :lookup AND revoked_at IS NULL"
)
WINDOW_SECONDS = 60
LIMIT = 10**8
limits = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
MAX_QUEUED_TASKS = int(os.environ.get("MAX_QUEUED_TASKS", DEFAULT_MAX_QUEUED_TASKS))


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def connection() -> Connection:
    """The request's one connection, as the product's session holds one.

    A safe request reads in autocommit; any other runs in a transaction its view commits.
    """
    if "connection" not in g:
        g.connection = (reads if request.method in SAFE_METHODS else engine).connect()
    return g.connection


@app.teardown_request
def close_connection(_error: BaseException | None) -> None:
    if "connection" in g:
        g.pop("connection").close()  # rolls back what was not committed


def authenticated_name() -> str:
    """The product's token check, by hand: find the row by lookup, compare the secret's hash."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").removeprefix("fcs_")
    lookup, _, secret = token.partition(".")
    row = connection().execute(TOKEN_SECRET_HASH, {"lookup": lookup}).first()
    digest = hashlib.sha256(secret.encode()).hexdigest()
    if row is None or not hmac.compare_digest(row.secret_hash, digest):
        abort(401)
    return row.name


def count_request(name: str) -> dict[str, str]:
    """The product's rate limit, by hand: one fixed-window counter per token, in one round trip.

    Its answer: the three RateLimit headers the product sends.
    """
    kind = "writes" if request.method in ("POST", "PUT", "PATCH", "DELETE") else "reads"
    now = int(time.time())
    key = f"baseline:{kind}:{name}:{now // WINDOW_SECONDS}"
    count, _ = limits.pipeline().incr(key).expire(key, WINDOW_SECONDS).execute()
    return {
        "RateLimit-Limit": str(LIMIT),
        "RateLimit-Remaining": str(LIMIT - count),
        "RateLimit-Reset": str(WINDOW_SECONDS - now % WINDOW_SECONDS),
    }


@app.before_request
def check_access():
    """What the product does before an API request: the token, then its rate limit."""
    if request.path != "/healthz":
        request.environ["rate_limit_headers"] = count_request(authenticated_name())


@app.after_request
def rate_limit_headers(response):
    response.headers.update(request.environ.get("rate_limit_headers", {}))
    return response


@app.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


USER_COLUMNS = "SELECT id, username, email, welcomed_at FROM users"


def user_json(row) -> dict:
    user = dict(row._mapping)
    user["welcomed_at"] = user["welcomed_at"] and user["welcomed_at"].isoformat()
    return user


@app.get("/users/<int:user_id>")
def get_user(user_id: int):
    row = connection().execute(text(f"{USER_COLUMNS} WHERE id = :id"), {"id": user_id}).one()
    return jsonify(user_json(row))


@app.get("/users/")
def list_users():
    after = int(request.args.get("after", 0))
    limit = int(request.args.get("limit", 20))
    rows = (
        connection()
        .execute(
            text(f"{USER_COLUMNS} WHERE id > :after ORDER BY id LIMIT :n"),
            {"after": after, "n": limit + 1},
        )
        .all()
    )
    items = [user_json(row) for row in rows[:limit]]
    next_url = f"/users/?limit={limit}&after={items[-1]['id']}" if len(rows) > limit else None
    return jsonify({"items": items, "next": next_url})


@app.post("/users/")
def create_user():
    body = request.get_json()
    user_id = (
        connection()
        .execute(
            text("INSERT INTO users (username, email) VALUES (:u, :e) RETURNING id"),
            {"u": body["username"], "e": body["email"]},
        )
        .scalar_one()
    )
    connection().commit()
    send_welcome.delay(user_id)  # after the commit, as the product queues its welcome
    return jsonify({"id": user_id, **body}), 201


@app.post("/tasks/divide")
def queue_divide():
    body = request.get_json()
    result = divide.delay(body["x"], body["y"])
    return jsonify({"id": result.id, "state": "PENDING"}), 202


def publish_recorded(task_id: str, publish: Callable[[], object]) -> None:
    """Publish a task whose record was committed, then mark it published (the outbox)."""
    publish()
    with bookkeeping.begin() as connection:
        connection.execute(MARK_PUBLISHED, {"id": task_id})


def queue_recorded_divide(name: str, queue: str, url: str) -> tuple[Response, int]:
    """The product's `POST /tasks/divide`: queue limit, record, commit, publish, mark."""
    if queue_length(divide.app) >= MAX_QUEUED_TASKS:  # the product's queue limit
        return jsonify({"status": 503}), 503
    body = request.get_json()
    args = [body["x"], body["y"]]
    task_id = str(uuid.uuid4())
    connection().execute(RECORD, {"id": task_id, "name": name, "args": json.dumps(args)})
    connection().commit()
    publish_recorded(task_id, lambda: celery.send_task(name, args, task_id=task_id, queue=queue))
    return jsonify({"id": task_id, "state": "PENDING", "url": f"{url}/{task_id}"}), 202


# The same work as the product's endpoints with their guarantees (record in the same
# transaction, publish after commit, mark published), without the framework layers.
@app.post("/outbox/users/")
def create_user_with_outbox():
    body = request.get_json()
    task_id = str(uuid.uuid4())
    user_id = (
        connection()
        .execute(
            text("INSERT INTO users (username, email) VALUES (:u, :e) RETURNING id"),
            {"u": body["username"], "e": body["email"]},
        )
        .scalar_one()
    )
    connection().execute(
        RECORD, {"id": task_id, "name": send_welcome.name, "args": json.dumps([user_id])}
    )
    connection().commit()
    publish_recorded(task_id, lambda: send_welcome.apply_async([user_id], task_id=task_id))
    return jsonify({"id": user_id, **body}), 201


@app.post("/outbox/tasks/divide")
def queue_divide_with_outbox():
    return queue_recorded_divide(divide.name, celery.conf.task_default_queue, "/tasks")


# The round trip's baseline: the product's worker runs the task (its claim and outcome
# writes included), so product ÷ this trip is what the product's web layers cost on the
# trip, and this trip ÷ bare Celery's is what HTTP and the guarantees cost.
PRODUCT_DIVIDE = "project.users.tasks.divide"  # run by the product's worker, from its queue
PRODUCT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE") or "celery"
FINISHED = ("SUCCESS", "FAILURE", "REVOKED")
RECORD_OUTCOME = text("SELECT state, result, error, finished_at FROM task_records WHERE id = :id")


@app.post("/trip/tasks/divide")
def queue_product_divide():
    """The product's `POST /tasks/divide`, its task run by the product's worker."""
    return queue_recorded_divide(PRODUCT_DIVIDE, PRODUCT_QUEUE, "/trip/tasks")


@app.get("/trip/tasks/<task_id>")
def get_product_task(task_id: str):
    """The product's `GET /tasks/<id>?wait=S`: the record, else a long poll, then Redis."""
    record = connection().execute(RECORD_OUTCOME, {"id": task_id}).one()
    if record.state in FINISHED:
        return jsonify({"id": task_id, "state": record.state, "result": record.result})
    try:
        AsyncResult(task_id, app=celery).get(timeout=float(request.args["wait"]), propagate=False)
    except CeleryTimeoutError:
        pass
    meta = celery.backend.get_task_meta(task_id)
    return jsonify({"id": task_id, "state": meta["status"], "result": meta["result"]})
