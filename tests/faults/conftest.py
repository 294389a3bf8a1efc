"""Fixtures for the fault tests: a private Redis, gunicorn and workers pointed at it."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from harness.processes import Process, start_gunicorn
from harness.servers import PrivatePostgres, PrivateRedis, postgres_bindir
from tests.support import skip_or_fail

# Short enough that a crashed worker's tasks come back within a test, and still longer
# than the task time limit, as the config requires.
TIME_LIMIT_S = 10
VISIBILITY_TIMEOUT_S = 15


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    for tool in ("redis-server", "redis-cli"):
        if not shutil.which(tool):
            skip_or_fail(f"{tool} not found: apt-get install redis-server")
    directory = Path(tempfile.mkdtemp(prefix="fault-redis-"))
    redis = PrivateRedis(directory)
    redis.start()
    yield redis
    redis.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def fault_env(migrated: dict[str, str], private_redis: PrivateRedis) -> dict[str, str]:
    """The test database, the private Redis, short limits and a small task delay."""
    return {
        **migrated,
        "CELERY_BROKER_URL": private_redis.url,
        "CELERY_RESULT_BACKEND": private_redis.url,
        "CELERY_TASK_TIME_LIMIT": str(TIME_LIMIT_S),
        "CELERY_TASK_SOFT_TIME_LIMIT": str(TIME_LIMIT_S - 1),
        "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT_S),
        "DIVIDE_DELAY_SECONDS": "0.05",
    }


@pytest.fixture
def fault_server(app: Flask, fault_env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """gunicorn on the private Redis; yields its base URL."""
    server, base_url = start_gunicorn(fault_env, log_dir)
    yield base_url
    server.stop()


@pytest.fixture
def workers() -> Iterator[list[Process]]:
    """Workers a test starts; whatever still runs is stopped at the end."""
    started: list[Process] = []
    yield started
    for worker in started:
        worker.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    try:
        postgres_bindir()
    except FileNotFoundError as error:
        skip_or_fail(str(error))
    directory = Path(tempfile.mkdtemp(prefix="fault-postgres-"))
    postgres = PrivatePostgres(directory)
    postgres.create()
    postgres.start()
    yield postgres
    try:
        postgres.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
