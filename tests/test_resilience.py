"""Dropped database connections cost no failed request (pool pre-ping)."""

import psycopg2
from flask.testing import FlaskClient

RACERS = 20


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
