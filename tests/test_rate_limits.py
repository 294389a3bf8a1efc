"""Rate limits: per token (or address), shared by every gunicorn worker, 429 problem+json."""

import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from flask import Flask
from limits.storage import storage_from_string

from harness.processes import start_gunicorn
from project import rate_limits
from tests.support import PROBLEM_JSON, assert_problem, create_token

RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def post(url: str, body: bytes, token: str) -> tuple[int, dict[str, str], bytes]:
    """POST JSON on a connection of its own (gunicorn hands each to any worker)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_writes_past_the_limit_get_429_across_two_workers(
    app: Flask, migrated: dict[str, str], log_dir: Path
) -> None:
    env = {
        **migrated,
        "API_AUTH": "required",
        "RATE_LIMIT_WRITES": "10/minute",
        "WEB_CONCURRENCY": "2",
    }
    process, base_url = start_gunicorn(env, log_dir)
    try:
        busy = create_token(env, f"busy-{uuid.uuid4().hex[:8]}")
        other = create_token(env, f"other-{uuid.uuid4().hex[:8]}")
        url, body = f"{base_url}/tasks/divide", b'{"x": 1, "y": 2}'
        # Counted per process, two workers would accept up to 20 of these 20.
        answers = [post(url, body, busy) for _ in range(20)]
        assert Counter(status for status, _, _ in answers) == {202: 10, 429: 10}
        status, headers, raw = answers[-1]
        assert headers["Content-Type"] == PROBLEM_JSON
        assert b'"type":"/problems/rate-limited"' in raw
        assert 1 <= int(headers["Retry-After"]) <= 60
        assert [headers[name] for name in RATE_HEADERS[:2]] == ["10", "0"]
        assert post(url, body, other)[0] == 202  # another token has its own budget
    finally:
        assert process.stop() == 0


def test_reads_and_writes_have_budgets_of_their_own(
    app_with: Callable[..., Flask], redis_url: str
) -> None:
    client = app_with(RATE_LIMIT_READS="3/minute", RATE_LIMIT_WRITES="2/minute").test_client()
    address = {"REMOTE_ADDR": f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.1"}
    for _ in range(3):  # OPTIONS spends no budget
        assert client.options("/users/", environ_base=address).status_code == 200
    reads = [client.get("/users/", environ_base=address) for _ in range(4)]
    assert [response.status_code for response in reads] == [200, 200, 200, 429]
    assert reads[0].headers["RateLimit-Remaining"] == "2"
    user = {"username": "ratelimited", "email": "ratelimited@example.com"}
    assert client.post("/users/", json=user, environ_base=address).status_code == 201
    body = assert_problem(client.get("/users/", environ_base=address), 429)
    assert "Too many reads from this address" in body["detail"]
    # Another client address has budgets of its own.
    assert client.get("/users/", environ_base={"REMOTE_ADDR": "192.0.2.77"}).status_code == 200


def test_health_docs_and_the_page_are_not_limited(app_with: Callable[..., Flask]) -> None:
    client = app_with(RATE_LIMIT_READS="1/minute").test_client()
    for path in ("/healthz", "/docs", "/", "/openapi.json") * 3:
        response = client.get(path, environ_base={"REMOTE_ADDR": "192.0.2.78"})
        assert response.status_code == 200, path
        assert "RateLimit-Limit" not in response.headers


def test_a_redis_outage_limits_in_memory_and_fails_nothing(
    app_with: Callable[..., Flask],
) -> None:
    # Port 1 refuses connections: the limiter's Redis (the broker's) is down.
    flask_app = app_with(
        CELERY_BROKER_URL="redis://127.0.0.1:1/0",
        RATE_LIMIT_WRITES="2/minute",
        RATE_LIMIT_READS="100/minute",
    )
    client = flask_app.test_client()
    users = [{"username": f"outage{i}", "email": f"outage{i}@example.com"} for i in range(3)]
    statuses = [client.post("/users/", json=user).status_code for user in users]
    assert statuses == [201, 201, 429]
    assert client.get("/users/").status_code == 200


def test_counting_returns_to_redis_once_it_is_back(
    app_with: Callable[..., Flask], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rate_limits, "RETRY_SHARED_SECONDS", 0)  # try Redis on every request
    flask_app = app_with(CELERY_BROKER_URL=redis_url, RATE_LIMIT_READS="100/minute")
    limits = flask_app.extensions[rate_limits.EXTENSION]
    reachable = limits.shared
    # Port 1 refuses connections: Redis is down, so this request is counted in memory.
    limits.shared = rate_limits.RedisFixedWindow(storage_from_string("redis://127.0.0.1:1/0"))
    client = flask_app.test_client()
    address = {"REMOTE_ADDR": "192.0.2.79"}
    assert client.get("/users/", environ_base=address).status_code == 200
    assert limits.shared_down_until > 0
    counters = redis.Redis.from_url(redis_url)
    assert not counters.keys("*192.0.2.79*")
    limits.shared = reachable  # Redis is back: the next request is counted there again
    assert client.get("/users/", environ_base=address).status_code == 200
    assert limits.shared_down_until == 0
    assert len(counters.keys("*192.0.2.79*")) == 1
