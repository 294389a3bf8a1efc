"""Dropped database connections cost no failed request (project/database.py)."""

import psycopg2
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from harness.processes import wait_for
from project import db

RACERS = 20


def alive(cursor: psycopg2.extensions.cursor, pids: list[int]) -> bool:
    """Say whether any of the server processes `pids` still runs."""
    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
    return cursor.fetchone()[0] > 0


def terminate_backends(database_url: str, pids: list[int] | None = None) -> list[int]:
    """Close server connections as a PostgreSQL restart does, and wait until they are gone.

    `pids` None: every connection to the database but this one. Returns the pids closed.
    """
    admin = psycopg2.connect(database_url)  # outside the app's pool
    # Autocommit: inside one transaction pg_stat_activity is one snapshot, and a backend
    # that had not exited yet at the first look would stay "alive" for good.
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            if pids is None:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                pids = [pid for (pid,) in cursor.fetchall()]
            cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s) AS pid", (pids,))
            # A restart closes the sockets before the database comes back; wait for the same.
            wait_for(lambda: not alive(cursor, pids), 10, "the terminated backends to exit")
    finally:
        admin.close()
    return pids


def test_dropped_database_connections_cost_no_failed_request(
    client: FlaskClient, migrated: dict[str, str]
) -> None:
    assert client.get("/users/").status_code == 200  # leaves a connection in the pool
    assert terminate_backends(migrated["DATABASE_URL"])
    assert client.get("/users/").status_code == 200


def test_connection_closed_during_a_request_still_answers(
    app: Flask, migrated: dict[str, str]
) -> None:
    """The server closes the connection after the request's last query (a restart): the
    response still goes out, and the next request gets a fresh connection."""

    @app.get("/test-connection-closed")
    def connection_closed() -> dict[str, int]:
        pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        terminate_backends(migrated["DATABASE_URL"], [pid])
        return {"pid": pid}

    client = app.test_client()
    response = client.get("/test-connection-closed")
    assert response.status_code == 200
    assert client.get("/test-connection-closed").json["pid"] != response.json["pid"]
