"""Hostile input: fuzzed requests get problem+json and never a 5xx; the worker takes only JSON."""

import http.client
import json
import pickle
import uuid
from urllib.parse import quote, urlsplit

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kombu import Connection, Exchange, Producer

from harness.processes import Process, wait_for
from tests.support import FIGURES, ProtectedServer, bearer

FUZZ_EXAMPLES = 400
PROBLEM_JSON = "application/problem+json"

ids = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.text(max_size=80),
    st.just("0c7b6d1e-0000-4000-8000-000000000000"),
).map(lambda text: quote(text, safe=""))
paths = st.one_of(
    st.sampled_from(["/users/", "/tasks/", "/tasks/divide", "/healthz", "/readyz", "/"]),
    ids.map(lambda i: f"/users/{i}"),
    ids.map(lambda i: f"/tasks/{i}"),
    st.tuples(
        st.sampled_from(["/users/", "/tasks/"]), st.text(max_size=40), st.text(max_size=40)
    ).map(lambda p: f"{p[0]}?limit={quote(p[1])}&after={quote(p[2])}"),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**280, max_value=10**320),
    st.floats(),
    st.text(max_size=200),
    st.sampled_from(["\u0000", "\ud800", "\u202e", "\ufeff", "💥" * 60, " " * 129, "x" * 129]),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children)
    ),
    max_leaves=15,
)
objects = st.one_of(
    st.fixed_dictionaries({"x": json_values, "y": json_values}),
    st.fixed_dictionaries({"username": json_values, "email": json_values}),
    json_values,
)
bodies = st.one_of(
    objects.map(lambda value: json.dumps(value).encode()),
    objects.map(
        lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    ),
    st.text(max_size=200).map(lambda text: ("{" + text).encode("utf-8", "surrogatepass")),
    st.binary(max_size=500),
    st.integers(1, 40_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(4_000, 6_000).map(lambda digits: b'{"x": ' + b"9" * digits + b', "y": 1}'),
    st.just(b'{"username": "' + b"x" * 70_000 + b'"}'),
    st.just(b""),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/problem+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        None,
    ]
)


def send(
    base_url: str,
    method: str,
    path: str,
    body: bytes,
    content_type: str | None,
    token: str | None = None,
):
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Content-Type": content_type} if content_type else {}
    headers.update(bearer(token))
    try:
        connection.request(method, path, body=body if method != "GET" else None, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


PUBLIC_PATHS = {"/healthz", "/readyz", "/"}


@pytest.mark.parametrize("authenticated", [True, False], ids=["with-token", "without-token"])
def test_fuzzed_requests_get_problems_never_server_errors(
    request: pytest.FixtureRequest,
    protected_server: ProtectedServer,
    worker: Process,
    authenticated: bool,
) -> None:
    """With API_AUTH=required, as production runs: with a token, and without one."""
    token = protected_server.token if authenticated else None
    tried: list[tuple[str, str, int]] = []
    bad: list[tuple] = []

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]),
        path=paths,
        body=bodies,
        content_type=content_types,
    )
    def fuzz(method: str, path: str, body: bytes, content_type: str | None) -> None:
        status, response_type, raw = send(
            protected_server.url, method, path, body, content_type, token
        )
        tried.append((method, path, status))
        if not authenticated and path not in PUBLIC_PATHS and status != 401:
            bad.append((method, path, content_type, body[:200], status, raw[:300]))
        elif status >= 500:
            bad.append((method, path, content_type, body[:200], status, raw[:300]))
        elif status >= 400:
            problem = json.loads(raw) if response_type == PROBLEM_JSON else None
            if not problem or not {"type", "title", "status", "detail"} <= problem.keys():
                bad.append((method, path, content_type, body[:200], status, raw[:300]))

    fuzz()
    statuses = [status for *_, status in tried]
    request.config.stash.setdefault(FIGURES, []).append(
        f"fuzz {'with' if authenticated else 'without'} a token: requests={len(tried)} "
        f"unauthorized={statuses.count(401)} server_errors={sum(s >= 500 for s in statuses)} "
        f"client_errors={sum(400 <= s < 500 for s in statuses)} bad_responses={len(bad)}"
    )
    assert bad == []


def test_worker_refuses_a_pickled_message(app: Flask, redis_url: str, worker: Process) -> None:
    task_id = f"pickle-{uuid.uuid4()}"
    headers = {"lang": "py", "task": "project.users.tasks.divide", "id": task_id, "retries": 0}
    body = ((1, 2), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
    assert pickle.loads(pickle.dumps(body)) == body
    with Connection(redis_url) as connection:
        Producer(connection).publish(
            body,
            exchange=Exchange("celery", type="direct"),
            routing_key="celery",
            serializer="pickle",
            headers=headers,
        )
    wait_for(
        lambda: "untrusted content of type pickle" in worker.output(), 30, "the worker to refuse it"
    )
    assert f"[{task_id}] received" not in worker.output()
    assert f"[{task_id}] succeeded" not in worker.output()
