"""The PostgreSQL and Redis the tests and the benchmark use.

`python -m harness.services` says in one line what to start if one does not answer.
"""

import os
import sys

import psycopg2
import redis

TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres:postgres@localhost:5432/postgres"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://localhost:6379/0")
START_HINT = (
    "start them (on this machine kind: "
    "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` and "
    '`redis-server --daemonize yes --port 6379 --save ""`) '
    "or point TEST_DATABASE_URL / TEST_REDIS_URL at running servers"
)


def unreachable_postgres() -> str | None:
    """Return one line saying PostgreSQL does not answer and what to do, or None."""
    try:
        psycopg2.connect(TEST_DATABASE_URL, connect_timeout=3).close()
    except psycopg2.Error as error:
        reason = str(error).strip().splitlines()[0]
        return f"PostgreSQL is not reachable at {TEST_DATABASE_URL} ({reason}); {START_HINT}"
    return None


def unreachable_redis() -> str | None:
    """Return one line saying Redis does not answer and what to do, or None."""
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        return f"Redis is not reachable at {TEST_REDIS_URL} ({error}); {START_HINT}"
    return None


def unreachable_services() -> str | None:
    """Return one line naming the first unreachable service and what to do, or None."""
    return unreachable_postgres() or unreachable_redis()


if __name__ == "__main__":
    problem = unreachable_services()
    if problem:
        sys.exit(problem)
