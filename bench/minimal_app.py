"""Baseline: a minimal Flask app doing the same work as the product's endpoints, no more."""

import json
import os
import uuid

from flask import Flask, jsonify, request
from sqlalchemy import create_engine, text

from bench.bare_celery import divide, send_welcome
from project.config import DEFAULT_MAX_QUEUED_TASKS
from project.database import ping_closed_connections
from project.tasks.queue_limit import queue_length

app = Flask(__name__)
url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg2://", 1)
engine = create_engine(url)
ping_closed_connections(engine)  # the product's connection check: no round trip
# As the product's bookkeeping engine: autocommit, commits not waiting for the disk.
bookkeeping = create_engine(
    url, isolation_level="AUTOCOMMIT", connect_args={"options": "-c synchronous_commit=off"}
)
RECORD = text(
    "INSERT INTO task_records (id, name, args, created_at) VALUES (:id, :name, :args, now())"
)
MARK_PUBLISHED = text("UPDATE task_records SET published_at = now() WHERE id = :id")


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
    with engine.connect() as connection:
        row = connection.execute(text(f"{USER_COLUMNS} WHERE id = :id"), {"id": user_id}).one()
    return jsonify(user_json(row))


@app.get("/users/")
def list_users():
    after = int(request.args.get("after", 0))
    limit = int(request.args.get("limit", 20))
    with engine.connect() as connection:
        rows = connection.execute(
            text(f"{USER_COLUMNS} WHERE id > :after ORDER BY id LIMIT :n"),
            {"after": after, "n": limit + 1},
        ).all()
    items = [user_json(row) for row in rows[:limit]]
    next_url = f"/users/?limit={limit}&after={items[-1]['id']}" if len(rows) > limit else None
    return jsonify({"items": items, "next": next_url})


@app.post("/users/")
def create_user():
    body = request.get_json()
    with engine.begin() as connection:
        user_id = connection.execute(
            text("INSERT INTO users (username, email) VALUES (:u, :e) RETURNING id"),
            {"u": body["username"], "e": body["email"]},
        ).scalar_one()
    send_welcome.delay(user_id)  # after the commit, as the product queues its welcome
    return jsonify({"id": user_id, **body}), 201


@app.post("/tasks/divide")
def queue_divide():
    body = request.get_json()
    result = divide.delay(body["x"], body["y"])
    return jsonify({"id": result.id, "state": "PENDING"}), 202


def publish_recorded(task, task_id: str, *args) -> None:
    """Publish a task whose record was committed, then mark it published (the outbox)."""
    task.apply_async(args, task_id=task_id)
    with bookkeeping.begin() as connection:
        connection.execute(MARK_PUBLISHED, {"id": task_id})


# The same work as the product's endpoints with their guarantees (record in the same
# transaction, publish after commit, mark published), without the framework layers.
@app.post("/outbox/users/")
def create_user_with_outbox():
    body = request.get_json()
    task_id = str(uuid.uuid4())
    with engine.begin() as connection:
        user_id = connection.execute(
            text("INSERT INTO users (username, email) VALUES (:u, :e) RETURNING id"),
            {"u": body["username"], "e": body["email"]},
        ).scalar_one()
        connection.execute(
            RECORD, {"id": task_id, "name": send_welcome.name, "args": json.dumps([user_id])}
        )
    publish_recorded(send_welcome, task_id, user_id)
    return jsonify({"id": user_id, **body}), 201


@app.post("/outbox/tasks/divide")
def queue_divide_with_outbox():
    if queue_length(divide.app) >= DEFAULT_MAX_QUEUED_TASKS:  # the product's queue limit
        return jsonify({"status": 503}), 503
    body = request.get_json()
    task_id = str(uuid.uuid4())
    with engine.begin() as connection:
        args = json.dumps([body["x"], body["y"]])
        connection.execute(RECORD, {"id": task_id, "name": divide.name, "args": args})
    publish_recorded(divide, task_id, body["x"], body["y"])
    return jsonify({"id": task_id, "state": "PENDING"}), 202
