"""One function per benchmark row group; each returns rows of product vs baseline figures."""

import hashlib
import http.client
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from bench.measure import median, percentile, pgbench_select_only, redis_benchmark, wrk
from bench.paired import (
    COMPARISON_MAX_ROUNDS,
    MAX_ROUNDS,
    TARGET_HALF_WIDTH,
    Paired,
    Sample,
    paired_rounds,
    tree_cpu_seconds,
)
from bench.stack import BenchStack
from harness.processes import REPO_ROOT, Process, free_port
from harness.servers import postgres_bindir

TASKS_PER_ROUND = 400
WARM_UP = 100
ROUND_TRIPS = 200
ROUND_SECONDS = 4  # per round of a web row, both sides loaded at once
WRK_CONNECTIONS = 16
COMPARISON = "for comparison"  # the target of a row shown beside the others, not checked
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


def paired_row(name: str, paired: Paired, unit: str, target: str, **extra) -> dict:
    """A row of paired rounds: the CPU ratio with its interval, throughput besides."""

    def figures(side: str) -> str:
        cpu = paired.cpu_per_unit_us(side)
        return f"{paired.per_second(side):,.1f} {unit}s/s, {cpu:,.0f} µs CPU/{unit}"

    return {
        "name": name,
        "product": figures("product"),
        "baseline": figures("baseline"),
        "ratio": paired.ratio,
        "half_width": paired.half_width,
        "rounds": len(paired.ratios),
        "converged": paired.half_width <= TARGET_HALF_WIDTH,
        "round_ratios": [round(r, 3) for r in paired.ratios],
        "throughput_ratio": paired.per_second("product") / paired.per_second("baseline"),
        "target": target,
        "product_value": paired.cpu_per_unit_us("product"),
        "baseline_value": paired.cpu_per_unit_us("baseline"),
        **extra,
    }


def tasks_sample(publish: Callable[[int], object], count: int, worker: Process) -> Sample:
    """Publish `count` tasks, wait for every result; the worker's CPU and the wall time."""
    cpu_before = tree_cpu_seconds(worker.pid)
    started = time.perf_counter()
    results = [publish(i) for i in range(count)]
    for result in results:
        result.get(timeout=300)
    wall = time.perf_counter() - started
    return Sample(count, tree_cpu_seconds(worker.pid) - cpu_before, wall)


def task_throughput(stack: BenchStack) -> list[dict]:
    from bench.bare_celery import divide as bare_divide
    from project import create_app
    from project.tasks.records import recorded_by_caller
    from project.users.tasks import divide

    app = create_app()
    bare_worker = stack.worker("bench.bare_celery.celery")  # its own queue: both run at once
    worker = stack.worker()

    def bare() -> Sample:
        return tasks_sample(lambda i: bare_divide.delay(i, 1), TASKS_PER_ROUND, bare_worker)

    def product() -> Sample:
        return tasks_sample(lambda i: divide.delay(i, 1), TASKS_PER_ROUND, worker)

    with app.app_context():
        tasks_sample(lambda i: bare_divide.delay(i, 1), WARM_UP, bare_worker)
        tasks_sample(lambda i: divide.delay(i, 1), WARM_UP, worker)
        shipped = paired_rounds(product, bare)
        with recorded_by_caller():
            unrecorded = paired_rounds(product, bare, COMPARISON_MAX_ROUNDS)
    stack.stop(worker)

    unreliable_worker = stack.worker("bench.unreliable_worker.celery")
    with app.app_context(), recorded_by_caller():

        def unreliable() -> Sample:
            return tasks_sample(lambda i: divide.delay(i, 1), TASKS_PER_ROUND, unreliable_worker)

        loose = paired_rounds(unreliable, bare, COMPARISON_MAX_ROUNDS)
    stack.stop(unreliable_worker)
    stack.stop(bare_worker)
    return [
        paired_row("tasks as shipped (records, at-least-once)", shipped, "task", "≥ 1.0"),
        paired_row("tasks without the task record", unrecorded, "task", COMPARISON),
        paired_row("tasks without late ack, prefetch 4", loose, "task", COMPARISON),
    ]


def round_trip(stack: BenchStack) -> list[dict]:
    from bench.bare_celery import divide as bare_divide

    worker = stack.worker()
    bare_worker = stack.worker("bench.bare_celery.celery")  # its own queue: both run at once
    server, base_url = stack.gunicorn()
    baseline_server, baseline_url = stack.gunicorn("bench.minimal_app:app", BASELINE_CONFIG)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {stack.token}"}

    def http_trip(url: str, queue_path: str) -> Callable[[int], float]:
        """A trip through a web app: POST the task, then long-poll its URL until it ends."""
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

        def call(method: str, path: str, body: dict | None = None) -> dict:
            payload = json.dumps(body) if body is not None else None
            connection.request(method, path, payload, headers)
            return json.loads(connection.getresponse().read())

        def trip(i: int) -> float:
            started = time.perf_counter()
            task = call("POST", queue_path, {"x": i, "y": 1})
            while task["state"] not in ("SUCCESS", "FAILURE"):
                task = call("GET", f"{task['url']}?wait=5")  # the page's long poll
            return (time.perf_counter() - started) * 1000

        return trip

    def bare_trip(i: int) -> float:
        started = time.perf_counter()
        bare_divide.delay(i, 1).get(timeout=30)
        return (time.perf_counter() - started) * 1000

    # The same work through the minimal app, run by the product's worker.
    trips = {
        "product": http_trip(base_url, "/tasks/divide"),
        "bare": bare_trip,
        "same work": http_trip(baseline_url, "/trip/tasks/divide"),
    }
    # Trips in turn, one of each, back to back: a slow minute on a shared machine slows
    # all alike. (A pause between trips made every side slower: processes woke up cold.)
    times: dict[str, list[float]] = {side: [] for side in trips}
    for i in range(WARM_UP // 2 + ROUND_TRIPS):
        for side, trip in trips.items():
            times[side].append(trip(i))
    for process in (server, baseline_server, worker, bare_worker):
        stack.stop(process)
    product, bare, same_work = (times[side][WARM_UP // 2 :] for side in trips)
    return [
        row("task round trip p50 (POST, then GET ?wait)", percentile(product, 0.5),
            percentile(bare, 0.5), "ms", "≤ 1.5"),
        row("task round trip p99", percentile(product, 0.99), percentile(bare, 0.99), "ms", "–"),
        row("task round trip p50, the same work in the minimal app", percentile(same_work, 0.5),
            percentile(bare, 0.5), "ms", COMPARISON),
        row("task round trip p50 vs the minimal app doing the same work",
            percentile(product, 0.5), percentile(same_work, 0.5), "ms", COMPARISON),
    ]  # fmt: skip


# (row, product path, wrk script, baseline path, target). Each baseline does the work the
# product's endpoint must do for its guarantees (the outbox write for queued tasks), so the
# ratio is what the framework layers cost; the last two rows show what the guarantees cost
# (POST /users/ has a floor there: at most 1 / 0.7 the CPU of the insert plus a delay()).
ENDPOINTS = [
    ("GET /users/<id>", "/users/500", None, "/users/500", "≥ 0.85"),
    ("GET /users/?limit=20", "/users/?limit=20&after=100", None, "/users/?limit=20&after=100",
     "≥ 0.85"),
    ("POST /users/", "/users/", "create_user.lua", "/outbox/users/", "≥ 0.85"),
    ("POST /tasks/divide", "/tasks/divide", "divide.lua", "/outbox/tasks/divide", "≥ 0.85"),
    ("GET /healthz", "/healthz", None, "/healthz", "≥ 0.85"),
    ("POST /users/ vs bare delay() after commit", "/users/", "create_user.lua", "/users/",
     "≥ 0.7"),
    ("POST /tasks/divide vs bare delay()", "/tasks/divide", "divide.lua", "/tasks/divide",
     COMPARISON),
]  # fmt: skip


def seed_users(stack: BenchStack) -> None:
    """The 1,000 users the web rows (and their profiles) read."""
    stack.sql(
        "INSERT INTO users (username, email) SELECT 'seed' || g, 'seed' || g || '@example.com' "
        "FROM generate_series(1, 1000) AS g ON CONFLICT DO NOTHING"
    )


def wrk_sample(
    server: Process, url: str, seconds: int, script: str | None, headers: tuple[str, ...]
) -> Sample:
    """Load `url` with wrk; the requests served and the server's CPU (master and workers)."""
    cpu_before = tree_cpu_seconds(server.pid)
    result = wrk(url, seconds, WRK_CONNECTIONS, script, headers)
    cpu = tree_cpu_seconds(server.pid) - cpu_before
    extra = {"p99_ms": result.p99_ms, "errors": result.errors}
    return Sample(result.requests, cpu, result.requests / result.requests_per_s, extra)


def web(stack: BenchStack) -> list[dict]:
    seed_users(stack)
    product_server, product_url = stack.gunicorn()
    baseline_server, baseline_url = stack.gunicorn("bench.minimal_app:app", BASELINE_CONFIG)
    rows = []
    for name, path, script, baseline_path, target in ENDPOINTS:

        def product(path=path, script=script, seconds=ROUND_SECONDS) -> Sample:
            return wrk_sample(
                product_server, product_url + path, seconds, script, stack.auth_headers
            )

        def baseline(path=baseline_path, script=script, seconds=ROUND_SECONDS) -> Sample:
            return wrk_sample(
                baseline_server, baseline_url + path, seconds, script, stack.auth_headers
            )

        product(seconds=1)  # warm both up
        baseline(seconds=1)
        max_rounds = COMPARISON_MAX_ROUNDS if target == COMPARISON else MAX_ROUNDS
        paired = paired_rounds(product, baseline, max_rounds)
        errors = {
            side: sum(s.extra["errors"] for s in getattr(paired, side))
            for side in ("product", "baseline")
        }
        rows.append(paired_row(f"web {name}", paired, "request", target, errors=errors))
    stack.stop(product_server)
    stack.stop(baseline_server)
    return rows


ACCESS_OFF = {"API_AUTH": "off", "RATE_LIMIT_WRITES": "off", "RATE_LIMIT_READS": "off"}
TOKENS_ONLY = {"RATE_LIMIT_WRITES": "off", "RATE_LIMIT_READS": "off"}


def access_costs(stack: BenchStack) -> list[dict]:
    """What API tokens and rate limits cost the product: the same endpoint with each off."""
    seed_users(stack)
    servers = {
        name: stack.gunicorn(**env)
        for name, env in (("off", ACCESS_OFF), ("tokens", TOKENS_ONLY), ("both", {}))
    }

    def side(name: str, path: str, script: str | None) -> Callable[[], Sample]:
        server, url = servers[name]
        return lambda: wrk_sample(server, url + path, ROUND_SECONDS, script, stack.auth_headers)

    rows = []
    for label, path, script in (
        ("GET /users/<id>", "/users/500", None),
        ("POST /tasks/divide", "/tasks/divide", "divide.lua"),
    ):
        for product, baseline, what in (
            ("tokens", "off", "tokens"),
            ("both", "tokens", "rate limits"),
        ):
            side(product, path, script)()  # warm up
            paired = paired_rounds(
                side(product, path, script), side(baseline, path, script), COMPARISON_MAX_ROUNDS
            )
            name = f"cost of {what}: {label}, with vs without"
            rows.append(paired_row(name, paired, "request", COMPARISON))
    for server, _ in servers.values():
        stack.stop(server)
    return rows


TASK_RECORDS = """
INSERT INTO task_records (id, name, args, created_at, published_at, state, result, error,
                          finished_at, deliveries)
SELECT md5(g::text),
       CASE WHEN g % 10 = 0 THEN 'project.users.tasks.send_welcome'
            ELSE 'project.users.tasks.divide' END,
       '[1, 2]', now(), now(),
       CASE WHEN g % 100 = 0 THEN 'FAILURE' ELSE 'SUCCESS' END,
       CASE WHEN g % 100 = 0 THEN NULL ELSE '0.5'::json END,
       CASE WHEN g % 100 = 0
            THEN '{"type": "ZeroDivisionError", "message": "division by zero"}'::json END,
       now(), 1
FROM generate_series(1, {n}) AS g; ANALYZE task_records
"""
# Row label → path, for a database of n users and n task records (the oldest is seq 1).
SCALE_PATHS = {
    "GET /users/<id>": "/users/{deep}",
    "GET /users/?limit=20&after=deep": "/users/?limit=20&after={deep}",
    "GET /tasks/?limit=20": "/tasks/?limit=20",
    "GET /tasks/?limit=20&after=deep": "/tasks/?limit=20&after={oldest_task}",
    "GET /tasks/?state=FAILURE (1 %)": "/tasks/?limit=20&state=FAILURE",
    "GET /tasks/?name=send_welcome (10 %)": "/tasks/?limit=20&name=send_welcome",
}
SCALE_SIZES = (10_000, 1_000_000)
SCALE_ROUNDS = 7
SCALE_ROUND_SECONDS = 1  # ~500 requests each: more, shorter rounds ride out a burst better
# One connection: the p50 is then the request's own time, not its wait for a busy CPU (which
# moved these rows by ±50 % between runs on 2 shared cores).
SCALE_CONNECTIONS = 1


def scale(stack: BenchStack) -> list[dict]:
    servers: dict[int, str] = {}
    seconds: dict[int, float] = {}
    for n in SCALE_SIZES:
        url = stack.create_database(migrate=True)
        started = time.perf_counter()
        stack.sql(
            "INSERT INTO users (username, email) SELECT 'user' || g, 'user' || g || '@example.com' "
            f"FROM generate_series(1, {n}) AS g; ANALYZE users",
            url,
        )
        seconds[n] = time.perf_counter() - started
        stack.sql(TASK_RECORDS.replace("{n}", str(n)), url)
        servers[n] = stack.gunicorn(DATABASE_URL=url)[1]
    rows = []
    small, large = SCALE_SIZES
    oldest_task = hashlib.md5(b"100").hexdigest()  # the id TASK_RECORDS gives record 100
    for label, path in SCALE_PATHS.items():
        p50s: dict[int, list[float]] = {n: [] for n in SCALE_SIZES}
        for _ in range(SCALE_ROUNDS):  # alternate sizes; the median p50 of each
            for n in SCALE_SIZES:
                target = servers[n] + path.format(deep=n - 100, oldest_task=oldest_task)
                load = wrk(
                    target, SCALE_ROUND_SECONDS, SCALE_CONNECTIONS, headers=stack.auth_headers
                )
                p50s[n].append(load.p50_ms)
        rows.append(
            row(f"scale: {label} p50, {large:,} vs {small:,} rows", median(p50s[large]),
                median(p50s[small]), "ms", "≤ 1.2", note=f"baseline column: {small:,} rows")
        )  # fmt: skip
    return rows + [row(f"scale: bulk insert of {large:,} users", seconds[large], None, "s", "–")]


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
