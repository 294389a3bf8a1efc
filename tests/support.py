"""Helpers the tests share: figures, problem responses, databases, task accounting.

Starting processes and services is harness/'s job; this module holds what only tests need.
"""

import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple, NoReturn, Protocol, Self
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from harness.processes import BIN, run_cli
from harness.services import TEST_DATABASE_URL

PROBLEM_JSON = "application/problem+json"
FIGURES = pytest.StashKey[list[str]]()


def skip_or_fail(reason: str) -> NoReturn:
    """Stop a test whose service or tool is missing, with a one-line `reason`.

    Outside CI the test is skipped; under CI=true it fails, since CI must run every tier.
    """
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def report(request: pytest.FixtureRequest, line: str) -> None:
    """Keep a line of figures for the run's summary (printed even when output is captured)."""
    request.config.stash.setdefault(FIGURES, []).append(line)


def assert_problem(response, status: int) -> dict:
    """Assert `response` is a problem+json of `status`; return its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    return body


def with_database(url: str, name: str) -> str:
    """Return `url` with its database name replaced."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


class Databases:
    """Creates PostgreSQL databases for this run and drops them at the end."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def _admin(self, sql: str) -> None:
        connection = psycopg2.connect(TEST_DATABASE_URL)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()

    def create(self) -> str:
        """Create an empty database and return its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return with_database(TEST_DATABASE_URL, name)

    def drop_all(self) -> None:
        for name in self.created:
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Submitting tasks over HTTP and accounting for every one: none lost, duplicates counted.
# The fault tests and the Compose tests both use it.


def run_check(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run a healthcheck as the container runtime does; return its exit code and its output."""
    result = run_cli(args, env)
    return result.returncode, (result.stdout + result.stderr).strip()


def create_token(env: dict[str, str], name: str) -> str:
    """Run `flask tokens create NAME` from the repo root, as a user types it; return the token."""
    result = run_cli([str(BIN / "flask"), "tokens", "create", name], env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class ProtectedServer(NamedTuple):
    """gunicorn with API_AUTH=required, and a token it accepts."""

    url: str
    env: dict[str, str]
    token: str


def bearer(token: str | None) -> dict[str, str]:
    """The Authorization header that carries an API token (none without one)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def http(
    method: str, url: str, body: dict | None = None, token: str | None = None
) -> tuple[int, str, dict | None]:
    """Send a request; return status, content type and the JSON body (None if not JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **bearer(token)}
    request = urllib.request.Request(url, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status, content_type, raw = (
                response.status,
                response.headers["Content-Type"],
                response.read(),
            )
    except urllib.error.HTTPError as error:
        status, content_type, raw = error.code, error.headers["Content-Type"], error.read()
    try:
        return status, content_type or "", json.loads(raw)
    except ValueError:
        return status, content_type or "", None


def submit_divisions(base_url: str, count: int, token: str | None = None) -> dict[str, float]:
    """Queue divide(i, 4) for i in range(count) through the API; return id -> expected result."""

    def one(i: int) -> tuple[str, float]:
        status, _, body = http("POST", f"{base_url}/tasks/divide", {"x": i, "y": 4}, token)
        assert status == 202, (status, body)
        return body["id"], i / 4

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, range(count)))


class BackgroundLoad:
    """Threads that send load until the `with` block ends; subclasses fill `self.threads`."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)


@dataclass
class Tally:
    submitted: int
    succeeded: int = 0
    failed: int = 0
    wrong: int = 0
    lost: int = 0
    duplicates: int = 0
    recovery_s: float = 0.0
    lost_ids: list[str] = field(default_factory=list)

    def line(self, name: str) -> str:
        return (
            f"{name}: submitted={self.submitted} succeeded={self.succeeded} failed={self.failed} "
            f"lost={self.lost} duplicates={self.duplicates} recovery_s={self.recovery_s:.1f}"
        )


class WorkerLog(Protocol):
    """Anything that can show a worker's log: a Process, or a Compose service's logs."""

    def output(self) -> str: ...


def account(
    base_url: str,
    expected: dict[str, float],
    workers: list[WorkerLog],
    since: float,
    timeout: float,
    token: str | None = None,
) -> Tally:
    """Wait until every task is final (or `timeout`), then count outcomes and duplicates."""
    tally = Tally(submitted=len(expected))
    pending = dict(expected)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for task_id in list(pending):
            status, _, body = http("GET", f"{base_url}/tasks/{task_id}", token=token)
            if status != 200 or body["state"] not in ("SUCCESS", "FAILURE"):
                continue
            want = pending.pop(task_id)
            if body["state"] == "FAILURE":
                tally.failed += 1
            elif body["result"] == want:
                tally.succeeded += 1
            else:
                tally.wrong += 1
        if pending:
            time.sleep(0.5)
    tally.recovery_s = time.monotonic() - since
    tally.lost = len(pending)
    tally.lost_ids = sorted(pending)
    tally.duplicates = duplicate_executions(workers, set(expected))
    return tally


def duplicate_executions(workers: list[WorkerLog], task_ids: set[str]) -> int:
    """Count executions beyond the first, from the workers' "succeeded" log lines."""
    pattern = re.compile(r"Task project\.users\.tasks\.divide\[([^\]]+)\] (?:succeeded|raised)")
    runs = Counter(
        match.group(1)
        for worker in workers
        for match in pattern.finditer(worker.output())
        if match.group(1) in task_ids
    )
    return sum(count - 1 for count in runs.values() if count > 1)
