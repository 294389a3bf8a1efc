"""Scheduled work and self-healing workers in the Compose stack: beat, caps, shutdown, stalls."""

import json
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from harness.processes import wait_for
from tests.e2e.stack import Stack, docker_engine_answers
from tests.support import report, skip_or_fail

PURGE = "project.tasks.tasks.purge_tasks"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """A stack of its own (these tests pause Redis and stop services), with test tasks."""
    if not docker_engine_answers():
        skip_or_fail("no Docker engine answers: install and start one (.ci/setup-machine does)")
    stack = Stack()
    stack.env.update(
        {
            "COMPOSE_FILE": "compose.yml:tests/e2e/compose.test-tasks.yml",
            "TASK_PURGE_INTERVAL_SECONDS": "2",
            "BEAT_LOCK_TIMEOUT_SECONDS": "10",
            "CELERY_TASK_TIME_LIMIT": "60",
            "CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT": "8",
            "WORKER_STOP_GRACE_PERIOD": "20s",
            "CELERY_WORKER_MAX_MEMORY_PER_CHILD": str(150 * 1024),
            "WORKER_MEM_LIMIT": "800m",
            "WORKER_RESTART_AFTER_FAILURES": "1",  # SIGTERM at the 1st failure, SIGKILL at the 3rd
        }
    )
    try:
        stack.compose("up", "-d", "--build", "--wait", timeout=900)
        stack.token = stack.compose("exec", "web", "flask", "tokens", "create", "e2e").stdout
        stack.token = stack.token.strip()
        yield stack
    except AssertionError:
        print(stack.compose("logs", "--no-color", check=False).stdout[-5000:])
        raise
    finally:
        stack.compose("down", "-v", "--remove-orphans", check=False)


def sql(stack: Stack, query: str) -> str:
    """Run one query in the stack's PostgreSQL; return its output."""
    return stack.compose(
        "exec", "-T", "db", "sh", "-c", f'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "{query}"'
    ).stdout.strip()


def purges_sent(stack: Stack) -> int:
    return int(sql(stack, f"SELECT count(*) FROM task_records WHERE name = '{PURGE}'"))


def containers(stack: Stack, service: str) -> list[str]:
    return stack.compose("ps", "-q", service).stdout.split()


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def logs(container: str) -> str:
    """A container's output (Celery logs to stdout, Python's warnings to stderr)."""
    result = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
    return result.stdout + result.stderr


def inspect(container: str, template: str) -> str:
    return docker("inspect", "-f", template, container).strip()


def in_worker(stack: Stack, code: str, timeout: float = 120) -> str:
    """Run Python in the worker container (which has the test tasks); return its output."""
    return stack.compose("exec", "-T", "worker", "python", "-c", code, timeout=timeout).stdout


def task_state(stack: Stack, task_id: str) -> str:
    return sql(stack, f"SELECT state FROM task_records WHERE id = '{task_id}'")


def test_one_beat_sends_when_two_run_and_the_other_takes_over(
    request: pytest.FixtureRequest, stack: Stack
) -> None:
    stack.compose("up", "-d", "--wait", "--scale", "beat=2", "beat")
    beats = containers(stack, "beat")
    assert len(beats) == 2
    leader = wait_for(
        lambda: next((c for c in beats if "Acquired lock" in logs(c)), None),
        30,
        "a beat to take the lock",
    )
    before, started = purges_sent(stack), time.monotonic()
    time.sleep(30)
    sent, elapsed = purges_sent(stack) - before, time.monotonic() - started
    report(
        request,
        f"compose beat x2, every 2 s for {elapsed:.0f} s: expected≈{elapsed / 2:.0f} sent={sent}",
    )
    assert elapsed / 2 - 3 <= sent <= elapsed / 2 + 3

    (standby,) = (c for c in beats if c != leader)
    docker("kill", leader)  # dies holding the lock: the other waits out its TTL
    killed = time.monotonic()
    wait_for(lambda: "Acquired lock" in logs(standby), 30, "the standby to lead")
    takeover = time.monotonic() - killed
    report(request, f"compose beat failover: takeover_s={takeover:.1f} (lock TTL 10 s)")
    assert takeover <= 10 + 5 + 3

    stack.compose("stop", "beat")
    time.sleep(10)  # five runs missed
    before = purges_sent(stack)
    stack.compose("up", "-d", "--scale", "beat=1", "beat")
    wait_for(lambda: purges_sent(stack) > before, 30, "the restarted beat to send")
    time.sleep(2)
    burst = purges_sent(stack) - before
    report(request, f"compose beat restarted after 10 s away: sent={burst} in its first ~2 s")
    assert burst <= 3


def test_a_leaking_pool_process_is_replaced_not_oom_killed(
    request: pytest.FixtureRequest, stack: Stack
) -> None:
    (worker,) = containers(stack, "worker")
    pids = json.loads(
        in_worker(
            stack,
            "import json; from app import celery; from tests.worker_tasks import leak; "
            "print(json.dumps([leak.delay(60).get(timeout=60) for _ in range(8)]))",
        ).splitlines()[-1]
    )
    logs = stack.compose("logs", "--no-color", "worker").stdout
    replaced = len(re.findall(r"pool process \d+ replaced: it used \d+ KiB, past", logs))
    report(request, f"compose memory cap: 8 tasks leaking 60 MiB, replaced={replaced}")
    assert replaced >= 2 and len(set(pids)) >= 3
    assert inspect(worker, "{{.State.OOMKilled}}") == "false"
    assert inspect(worker, "{{.HostConfig.Memory}}") == str(800 * 1024 * 1024)
    status, queued = stack.request("POST", "/tasks/divide", {"x": 3, "y": 4})
    assert status == 202 and stack.finished_task(queued["url"])["result"] == 0.75


def test_stopping_the_worker_finishes_short_tasks_and_hands_back_long_ones(
    request: pytest.FixtureRequest, stack: Stack
) -> None:
    ids = in_worker(
        stack,
        "from app import celery; from tests.worker_tasks import hold; "
        "print(hold.delay(5).id, hold.delay(30).id)",
    ).split()
    short, long = ids[-2:]
    wait_for(
        lambda: task_state(stack, short) == task_state(stack, long) == "STARTED",
        30,
        "both tasks to start",
    )
    started = time.monotonic()
    stack.compose("stop", "worker", timeout=120)
    stopped_in = time.monotonic() - started
    assert task_state(stack, short) == "SUCCESS"
    assert task_state(stack, long) != "SUCCESS"
    stack.compose("up", "-d", "--wait", "worker")
    wait_for(lambda: task_state(stack, long) == "SUCCESS", 90, "the long task after up")
    logs = stack.compose("logs", "--no-color", "worker").stdout
    runs = logs.count(f"tests.worker_tasks.hold[{long}] succeeded")
    report(request, f"compose soft shutdown: stopped in {stopped_in:.0f} s; long task ran {runs}x")
    assert runs == 1 and logs.count(f"hold[{short}] succeeded") == 1
    assert stopped_in < 20  # the soft shutdown's 8 s, not the grace period and a SIGKILL


def redis_cli(stack: Stack, *args: str) -> str:
    command = 'redis-cli --no-auth-warning -a "$(cat /run/app-secrets/redis_password)" ' + " ".join(
        args
    )
    return stack.compose("exec", "-T", "redis", "sh", "-c", command).stdout


def test_the_worker_recovers_from_a_stalled_consumer(
    request: pytest.FixtureRequest, stack: Stack
) -> None:
    (worker,) = containers(stack, "worker")
    restarts_before = int(inspect(worker, "{{.RestartCount}}"))
    for _ in range(3):  # reset the worker's connections, three times within 2 s
        killed = redis_cli(stack, "CLIENT", "KILL", "TYPE", "normal")
        assert re.fullmatch(r"\d+\s*", killed), killed
        time.sleep(0.5)
    stack.compose("pause", "redis")
    restarts_while_down = 0
    try:
        paused_until = time.monotonic() + 60
        while time.monotonic() < paused_until:
            time.sleep(5)
            restarts_while_down = int(inspect(worker, "{{.RestartCount}}")) - restarts_before
    finally:
        stack.compose("unpause", "redis")
    back = time.monotonic()

    def divided() -> bool:
        status, queued = stack.request("POST", "/tasks/divide", {"x": 1, "y": 4})
        if status != 202:
            return False  # web still reconnecting: 503
        state = wait_for(
            lambda: (s := stack.request("GET", queued["url"])[1]["state"]) in ("SUCCESS",) and s,
            120,
            "a task after the stall",
            interval=1,
        )
        return state == "SUCCESS"

    wait_for(divided, 180, "a task to succeed after Redis is back", interval=1)
    recovered = time.monotonic() - back
    restarts = int(inspect(worker, "{{.RestartCount}}")) - restarts_before
    report(request, f"stall: recovered_s={recovered:.0f}  restarts={restarts}")
    assert restarts_while_down <= 1
    assert recovered < 150


def test_the_healthcheck_restarts_a_worker_that_stopped_consuming(
    request: pytest.FixtureRequest, stack: Stack
) -> None:
    # Freeze the worker's main process: it consumes nothing and answers nothing, and a
    # SIGTERM waits (stopped), so the check must escalate to SIGKILL. The restart policy
    # then brings it back; no one outside the container acts.
    (worker,) = containers(stack, "worker")
    restarts_before = int(inspect(worker, "{{.RestartCount}}"))
    stack.compose(
        "exec",
        "-T",
        "worker",
        "sh",
        "-c",
        'kill -STOP "$(cat "/tmp/celery-worker-celery@$HOSTNAME.pid")"',
    )
    frozen = time.monotonic()
    wait_for(
        lambda: int(inspect(worker, "{{.RestartCount}}")) > restarts_before,
        240,
        "the healthcheck to end the frozen worker",
        interval=2,
    )
    restarted_s = time.monotonic() - frozen
    status, queued = stack.request("POST", "/tasks/divide", {"x": 1, "y": 8})
    assert status == 202 and stack.finished_task(queued["url"])["result"] == 0.125
    recovered = time.monotonic() - frozen
    restarts = int(inspect(worker, "{{.RestartCount}}")) - restarts_before
    checks = stack.compose("logs", "--no-color", "worker").stdout  # the worker's own log
    report(
        request,
        f"stall (frozen consumer): restarted_s={restarted_s:.0f} recovered_s={recovered:.0f}  "
        f"restarts={restarts}",
    )
    assert restarts == 1, checks[-3000:]
