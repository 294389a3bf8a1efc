"""Races and dropped connections, through gunicorn as in production."""

import json
import threading
import urllib.error
import urllib.request

import psycopg2
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from project import db

RACERS = 20


def post_json(url: str, payload: dict) -> int:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_concurrent_creations_of_one_username_get_one_201(server: str, app: Flask) -> None:
    barrier = threading.Barrier(RACERS)
    statuses: list[int] = []

    def racer(n: int) -> None:
        barrier.wait()
        statuses.append(post_json(f"{server}/users/", {"username": "race", "email": f"r{n}@x.io"}))

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] + [409] * (RACERS - 1)
    with app.app_context():
        assert db.session.execute(text("SELECT count(*) FROM users")).scalar_one() == 1


def test_dropped_database_connections_cost_no_failed_request(
    client: FlaskClient, migrated: dict[str, str]
) -> None:
    assert client.get("/users/").status_code == 200  # leaves a connection in the pool
    admin = psycopg2.connect(migrated["DATABASE_URL"])  # outside the app's pool
    admin.autocommit = True
    with admin.cursor() as cursor:
        # What a PostgreSQL restart does to every open connection.
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1
    admin.close()
    assert client.get("/users/").status_code == 200
