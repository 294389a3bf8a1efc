"""/metrics: Prometheus text from every gunicorn process, queue figures, who may read it."""

import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from harness.processes import start_gunicorn
from tests.support import ProtectedServer, http, report


def scrape(base_url: str, token: str | None = None) -> dict[str, list]:
    """Read /metrics and parse it as Prometheus does; return samples by metric family."""
    request = urllib.request.Request(base_url + "/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples: list, **labels: str) -> float:
    """The sum of the samples whose labels include these (across processes and series)."""
    return sum(s.value for s in samples if labels.items() <= s.labels.items())


def test_requests_are_counted_across_gunicorn_processes(server: str) -> None:
    for _ in range(40):  # gunicorn's two processes share these
        assert http("GET", f"{server}/users/")[0] == 200
    assert http("GET", f"{server}/users/999")[0] == 404
    durations = scrape(server)["flask_http_request_duration_seconds"]
    # The histogram's _count samples only: its buckets and _sum share the family.
    counts = [s for s in durations if s.name.endswith("_count")]
    assert value(counts, url_rule="/users/", method="GET", status="200") == 40
    assert value(counts, url_rule="/users/<int:user_id>", status="404") == 1


def test_queue_depth_follows_a_burst_with_no_worker(
    request: pytest.FixtureRequest, app: Flask, migrated: dict[str, str], log_dir: Path
) -> None:
    queue = f"metrics-{uuid.uuid4().hex[:8]}"  # no worker reads it
    process, base_url = start_gunicorn({**migrated, "CELERY_TASK_DEFAULT_QUEUE": queue}, log_dir)
    broker = redis.Redis.from_url(migrated["CELERY_BROKER_URL"])
    try:
        before = scrape(base_url)
        assert value(before["celery_queue_length"], queue=queue) == 0
        assert value(before["celery_queue_oldest_task_age_seconds"], queue=queue) == 0
        for i in range(25):
            assert http("POST", f"{base_url}/tasks/divide", {"x": i, "y": 1})[0] == 202
        after = scrape(base_url)
        waiting = value(after["celery_queue_length"], queue=queue)
        age = value(after["celery_queue_oldest_task_age_seconds"], queue=queue)
        pending = value(after["app_task_records"], state="PENDING")
        report(
            request, f"metrics after a burst of 25: queue_length={waiting} oldest_age_s={age:.2f}"
        )
        assert waiting == 25 and pending == 25
        assert 0 < age < 60
        assert "celery_workers" in after
    finally:
        broker.delete(queue)
        process.stop()


def test_metrics_need_a_token_unless_from_metrics_allow(
    protected_server: ProtectedServer, migrated: dict[str, str], log_dir: Path
) -> None:
    status, _, problem = http("GET", f"{protected_server.url}/metrics")
    assert status == 401 and problem["type"] == "/problems/unauthorized"
    assert "flask_http_request_duration_seconds" in scrape(
        protected_server.url, protected_server.token
    )
    env = {**migrated, "API_AUTH": "required", "METRICS_ALLOW": "127.0.0.1/32"}
    process, base_url = start_gunicorn(env, log_dir)
    try:
        assert "celery_queue_length" in scrape(base_url)  # loopback is allowed: no token
        assert http("GET", f"{base_url}/users/")[0] == 401  # the API still needs one
    finally:
        process.stop()
