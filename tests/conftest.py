"""Fixtures: a PostgreSQL database and a Redis db number of this run's own, a real worker.

A test that needs PostgreSQL or Redis gets it through `databases` or `redis_url`; if the
service does not answer, the test is skipped with one line saying what to start (under
CI=true it fails). Tests that need neither run without them.
"""

import inspect
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from _pytest.terminal import TerminalReporter
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from harness.processes import BIN, Process, run_cli, start_gunicorn, start_worker
from harness.services import TEST_REDIS_URL, unreachable_postgres, unreachable_redis
from project import create_app, db
from project.config import normalize_database_url
from project.database import all_engines
from tests.support import FIGURES, Databases, ProtectedServer, create_token, skip_or_fail

TESTS_DIR = Path(__file__).resolve().parent
# Each of these directories is one slow tier: its tests get the marker of its name.
TIER_DIRECTORIES = ("faults", "browser", "e2e", "swarm")
# Fixtures that start a real Celery worker (`site`: tests/browser/).
WORKER_FIXTURES = {"worker", "workers", "site"}


def starts_worker(item: pytest.Item) -> bool:
    """Whether a test starts a worker: through a fixture, or by calling start_worker."""
    if WORKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    function = getattr(item, "function", None)
    code = getattr(inspect.unwrap(function), "__code__", None) if function else None
    return code is not None and "start_worker" in code.co_names


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tiers (see pyproject.toml): faults, browser, e2e, swarm by directory; worker."""
    for item in items:
        if not item.path.is_relative_to(TESTS_DIR):
            continue
        directory = item.path.relative_to(TESTS_DIR).parts[0]
        if directory in TIER_DIRECTORIES:
            item.add_marker(directory)
        if starts_worker(item):
            item.add_marker("worker")


def pytest_terminal_summary(terminalreporter: TerminalReporter, config: pytest.Config) -> None:
    """Print the figures tests measured (timings, sizes, counts)."""
    figures = config.stash.get(FIGURES, [])
    if figures:
        terminalreporter.section("figures")
        for line in figures:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    """This run's databases on TEST_DATABASE_URL's server, dropped at the end."""
    problem = unreachable_postgres()
    if problem:
        skip_or_fail(problem)
    dbs = Databases()
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """Claim an empty Redis db number for this run; flush it at the end."""
    problem = unreachable_redis()
    if problem:
        skip_or_fail(problem)
    parts = urlsplit(TEST_REDIS_URL)
    marker = f"test-run-{uuid.uuid4().hex}"
    for number in range(1, 16):
        url = urlunsplit(parts._replace(path=f"/{number}"))
        client = redis.Redis.from_url(url)
        if client.dbsize() == 0 and client.set("test-run-claim", marker, nx=True):
            break
    else:
        pytest.exit(f"Redis at {TEST_REDIS_URL}: no empty db number among 1-15 for this run", 2)
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def service_env(databases: Databases, redis_url: str) -> Iterator[dict[str, str]]:
    """Point the app, the CLI and workers at this run's database and Redis db."""
    values = {
        "FLASK_CONFIG": "testing",
        "DATABASE_URL": databases.create(),
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in values.items():
            patch.setenv(key, value)
        yield {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="session")
def migrated(service_env: dict[str, str]) -> dict[str, str]:
    """Run `flask db upgrade` on the run's database, as a user does."""
    result = run_cli([str(BIN / "flask"), "db", "upgrade"], service_env)
    assert result.returncode == 0, result.stderr
    return service_env


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def worker(migrated: dict[str, str], log_dir: Path) -> Iterator[Process]:
    """A real Celery worker started as users start it, shared by the session."""
    process = start_worker(migrated, log_dir)
    yield process
    process.stop()


def empty_tables(flask_app: Flask) -> None:
    """Empty the tables a test may have filled."""
    with flask_app.app_context():
        db.session.execute(
            text("TRUNCATE users, task_records, idempotent_replies, api_tokens RESTART IDENTITY")
        )
        db.session.commit()


def close_connections(flask_app: Flask) -> None:
    """Close the app's database connections, so no test leaves any open."""
    with flask_app.app_context():
        for engine in all_engines(flask_app):
            engine.dispose()


@pytest.fixture
def app(migrated: dict[str, str]) -> Iterator[Flask]:
    """An app on the migrated test database; tables are emptied after each test."""
    flask_app = create_app("testing")
    yield flask_app
    empty_tables(flask_app)
    close_connections(flask_app)


@pytest.fixture
def app_with(
    monkeypatch: pytest.MonkeyPatch, migrated: dict[str, str]
) -> Iterator[Callable[..., Flask]]:
    """Build apps with some settings changed in the environment (each has its own Celery).

    Tables are emptied after each test, as with `app`.
    """
    built: list[Flask] = []

    def build(**settings: str) -> Flask:
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        built.append(create_app("testing"))
        return built[-1]

    yield build
    # Only apps on the run's database (some tests point one at a server of their own).
    run_database = normalize_database_url(migrated["DATABASE_URL"])
    ours = [a for a in built if a.config["SQLALCHEMY_DATABASE_URI"] == run_database]
    if ours:
        empty_tables(ours[0])
    for flask_app in built:
        close_connections(flask_app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def server(app: Flask, migrated: dict[str, str], log_dir: Path) -> Iterator[str]:
    """gunicorn serving app:app with the repo's gunicorn.conf.py; yields its base URL."""
    process, base_url = start_gunicorn(migrated, log_dir)
    yield base_url
    assert process.stop() == 0


@pytest.fixture
def protected_server(
    app: Flask, migrated: dict[str, str], log_dir: Path
) -> Iterator[ProtectedServer]:
    """gunicorn with API_AUTH=required, as production runs it, and a token to use."""
    env = {**migrated, "API_AUTH": "required"}
    process, base_url = start_gunicorn(env, log_dir)
    yield ProtectedServer(base_url, env, create_token(env, f"tests-{uuid.uuid4().hex[:8]}"))
    assert process.stop() == 0
