"""One function per benchmark row group; each returns rows of product vs baseline figures."""

import http.client
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from bench.measure import percentile, pgbench_select_only, redis_benchmark, wrk
from bench.stack import BenchStack
from harness.processes import REPO_ROOT, free_port
from harness.servers import postgres_bindir

TASKS = 2000
WARM_UP = 100
ROUND_TRIPS = 200
WRK_SECONDS = 6
ROUNDS = 2  # alternate product and baseline, keep each side's best: damps noisy neighbours
WRK_CONNECTIONS = 16
BASELINE_CONFIG = str(Path(__file__).parent / "gunicorn_baseline.py")


def row(name: str, product: float, baseline: float | None, unit: str, target: str, **extra):
    """A table row: figures rounded for reading, ratio = product / baseline."""
    return {
        "name": name,
        "product": f"{product:,.1f} {unit}",
        "baseline": f"{baseline:,.1f} {unit}" if baseline is not None else "–",
        "ratio": product / baseline if baseline else None,
        "target": target,
        "product_value": product,
        "baseline_value": baseline,
        **extra,
    }


def tasks_per_second(publish: Callable[[int], object], count: int) -> float:
    """Publish `count` tasks, wait for every result, return tasks per second."""
    for result in [publish(i) for i in range(WARM_UP)]:
        result.get(timeout=120)
    started = time.perf_counter()
    results = [publish(i) for i in range(count)]
    for result in results:
        result.get(timeout=300)
    return count / (time.perf_counter() - started)


def task_throughput(stack: BenchStack) -> list[dict]:
    from bench.bare_celery import divide as bare_divide
    from project import create_app
    from project.tasks.records import recorded_by_caller
    from project.users.tasks import divide

    app = create_app()
    bare_worker = stack.worker("bench.bare_celery.celery")
    bare = tasks_per_second(lambda i: bare_divide.delay(i, 1), TASKS)
    stack.stop(bare_worker)

    worker = stack.worker()
    with app.app_context():
        recorded = tasks_per_second(lambda i: divide.delay(i, 1), TASKS)
        with recorded_by_caller():
            unrecorded = tasks_per_second(lambda i: divide.delay(i, 1), TASKS)
    stack.stop(worker)

    unreliable_worker = stack.worker("bench.unreliable_worker.celery")
    with app.app_context(), recorded_by_caller():
        unreliable = tasks_per_second(lambda i: divide.delay(i, 1), TASKS)
    stack.stop(unreliable_worker)
    return [
        row(
            "task throughput (as shipped: records, at-least-once)",
            recorded,
            bare,
            "tasks/s",
            "≥ 0.8",
        ),
        row("task throughput without the task record", unrecorded, bare, "tasks/s", "≥ 0.8"),
        row(
            "task throughput without late ack, prefetch 4",
            unreliable,
            bare,
            "tasks/s",
            "for comparison",
        ),
    ]


def round_trip(stack: BenchStack) -> list[dict]:
    from bench.bare_celery import divide as bare_divide

    worker = stack.worker()
    server, base_url = stack.gunicorn()
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def call(method: str, path: str, body: dict | None = None) -> dict:
        payload = json.dumps(body) if body is not None else None
        connection.request(method, path, payload, {"Content-Type": "application/json"})
        return json.loads(connection.getresponse().read())

    product: list[float] = []
    for i in range(WARM_UP // 2 + ROUND_TRIPS):
        started = time.perf_counter()
        task = call("POST", "/tasks/divide", {"x": i, "y": 1})
        while task["state"] not in ("SUCCESS", "FAILURE"):
            task = call("GET", f"{task['url']}?wait=5")  # the page's long poll
        product.append((time.perf_counter() - started) * 1000)
    connection.close()
    stack.stop(server)
    stack.stop(worker)

    bare_worker = stack.worker("bench.bare_celery.celery")
    bare: list[float] = []
    for i in range(WARM_UP // 2 + ROUND_TRIPS):
        started = time.perf_counter()
        bare_divide.delay(i, 1).get(timeout=30)
        bare.append((time.perf_counter() - started) * 1000)
    stack.stop(bare_worker)
    product, bare = product[WARM_UP // 2 :], bare[WARM_UP // 2 :]
    return [
        row("task round trip p50 (POST, then GET ?wait)", percentile(product, 0.5),
            percentile(bare, 0.5), "ms", "≤ 2.0"),
        row("task round trip p99", percentile(product, 0.99), percentile(bare, 0.99), "ms", "–"),
    ]  # fmt: skip


# (row, product path, wrk script, baseline path if it differs)
ENDPOINTS = [
    ("GET /users/<id>", "/users/500", None, None),
    ("GET /users/?limit=20", "/users/?limit=20&after=100", None, None),
    ("POST /users/", "/users/", "create_user.lua", None),
    ("POST /tasks/divide", "/tasks/divide", "divide.lua", None),
    ("GET /healthz", "/healthz", None, None),
    # Baselines doing the product's guarantee work too (the outbox): the framework's cost.
    ("POST /users/ vs same work", "/users/", "create_user.lua", "/outbox/users/"),
    ("POST /tasks/divide vs same work", "/tasks/divide", "divide.lua", "/outbox/tasks/divide"),
]


def web(stack: BenchStack) -> list[dict]:
    stack.sql(
        "INSERT INTO users (username, email) SELECT 'seed' || g, 'seed' || g || '@example.com' "
        "FROM generate_series(1, 1000) AS g"
    )
    product_server, product_url = stack.gunicorn()
    baseline_server, baseline_url = stack.gunicorn("bench.minimal_app:app", BASELINE_CONFIG)
    rows = []
    for name, path, script, baseline_path in ENDPOINTS:
        # Alternate product and baseline so drift on the machine hits both alike.
        runs = [
            (wrk(product_url + path, WRK_SECONDS, WRK_CONNECTIONS, script),
             wrk(baseline_url + (baseline_path or path), WRK_SECONDS, WRK_CONNECTIONS, script))
            for _ in range(ROUNDS)
        ]  # fmt: skip
        product = max((p for p, _ in runs), key=lambda result: result.requests_per_s)
        baseline = max((b for _, b in runs), key=lambda result: result.requests_per_s)
        rows.append(
            row(f"web {name}", product.requests_per_s, baseline.requests_per_s, "req/s", "≥ 0.7",
                p99_ms={"product": product.p99_ms, "baseline": baseline.p99_ms},
                errors={"product": product.errors, "baseline": baseline.errors})
        )  # fmt: skip
    stack.stop(product_server)
    stack.stop(baseline_server)
    return rows


def scale(stack: BenchStack) -> list[dict]:
    latencies: dict[int, dict[str, float]] = {}
    seconds: dict[int, float] = {}
    for users in (10_000, 1_000_000):
        url = stack.create_database(migrate=True)
        started = time.perf_counter()
        stack.sql(
            "INSERT INTO users (username, email) SELECT 'user' || g, 'user' || g || '@example.com' "
            f"FROM generate_series(1, {users}) AS g; ANALYZE users",
            url,
        )
        seconds[users] = time.perf_counter() - started
        server, base_url = stack.gunicorn(DATABASE_URL=url)
        latencies[users] = {
            "by id": wrk(f"{base_url}/users/{users - 5}", 5, 4).p50_ms,
            "page deep": wrk(f"{base_url}/users/?limit=20&after={users - 100}", 5, 4).p50_ms,
        }
        stack.stop(server)
    return [
        row(f"scale: GET /users/{label} p50, 1M vs 10k users", latencies[1_000_000][key],
            latencies[10_000][key], "ms", "≤ 1.5", note="baseline column: 10,000 users")
        for label, key in (("<id>", "by id"), ("?limit=20&after=deep", "page deep"))
    ] + [row("scale: bulk insert of 1M users", seconds[1_000_000], None, "s", "–")]  # fmt: skip


def headroom(stack: BenchStack) -> list[dict]:
    port = urlsplit(stack.redis_url).port or 6379
    pgbench_url = stack.create_database(migrate=False)
    return [
        row("headroom: redis-benchmark GET (16 clients)", redis_benchmark(port, stack.redis_db),
            None, "req/s", "–"),
        row("headroom: pgbench -S (8 clients)",
            pgbench_select_only(postgres_bindir(), pgbench_url, 8), None, "tps", "–"),
    ]  # fmt: skip


def compose_startup(stack: BenchStack) -> list[dict]:
    def docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", *args], capture_output=True, text=True, **kwargs)

    if docker("info").returncode != 0:
        return [row("compose: (no Docker engine answers; skipped)", 0, None, "", "–")]
    env = {
        "COMPOSE_PROJECT_NAME": f"bench-{uuid.uuid4().hex[:6]}",
        "WEB_PORT": str(free_port()),
        "APP_IMAGE": "flask-celery-app:bench",
    }
    full_env = {**stack.env, **env}
    for key in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "SECRET_KEY"):
        full_env.pop(key)  # the stack's own services and generated secrets, not the bench's
    build = docker("compose", "build", cwd=REPO_ROOT, env=full_env)
    if build.returncode != 0:
        return [row("compose: build failed (see scripts/build-offline-images)", 0, None, "", "–")]
    try:
        started = time.perf_counter()
        docker("compose", "up", "-d", "--wait", cwd=REPO_ROOT, env=full_env, check=True)
        healthy_s = time.perf_counter() - started
    finally:
        docker("compose", "down", "-v", cwd=REPO_ROOT, env=full_env)
    size = int(docker("image", "inspect", "-f", "{{.Size}}", env["APP_IMAGE"]).stdout)
    return [
        row("compose: up -d to all healthy (image built)", healthy_s, None, "s", "–"),
        row("compose: app image size", size / 1e6, None, "MB", "–"),
    ]
