"""Redis restarted with a backlog queued: nothing lost, the web and worker recover alone."""

import time
from pathlib import Path

import pytest

from harness.processes import Process, start_worker, wait_for
from harness.servers import PrivateRedis
from tests.support import account, http, report, submit_divisions

BACKLOG = 100
PROBLEM_JSON = "application/problem+json"


def test_redis_restart_keeps_the_backlog_and_everything_recovers(
    request: pytest.FixtureRequest,
    fault_server: str,
    fault_env: dict[str, str],
    private_redis: PrivateRedis,
    log_dir: Path,
    workers: list[Process],
) -> None:
    expected = submit_divisions(fault_server, BACKLOG)  # no worker yet: all stay queued
    assert private_redis.queue_length("celery") == BACKLOG
    slow_env = {**fault_env, "DIVIDE_DELAY_SECONDS": "0.1"}
    workers.append(start_worker(slow_env, log_dir, concurrency=1))
    wait_for(lambda: "succeeded in" in workers[0].output(), 30, "the worker to start on it")

    private_redis.stop()
    down_at = time.monotonic()
    while_down = [http("POST", f"{fault_server}/tasks/divide", {"x": 1, "y": 1}) for _ in range(3)]
    # The backlog's last task is still queued: its live state is in Redis only.
    lookup_while_down = http("GET", f"{fault_server}/tasks/{list(expected)[-1]}")
    private_redis.start()
    for status, _, body in while_down:
        if status == 202:
            expected[body["id"]] = 1.0  # kept in the outbox: published when Redis is back

    def web_accepts_tasks() -> bool:
        status, _, body = http("POST", f"{fault_server}/tasks/divide", {"x": 8, "y": 4})
        if status == 202:
            expected[body["id"]] = 2.0
        return status == 202

    wait_for(web_accepts_tasks, 30, "the web to accept tasks again", interval=0.2)
    tally = account(fault_server, expected, workers, down_at, timeout=90)
    report(request, tally.line("redis restart"))

    # Tasks submitted while Redis is down are committed with their record and published
    # by the outbox sweeper later; reading an unfinished task's live state needs Redis.
    assert [status for status, _, _ in while_down] == [202] * len(while_down)
    assert lookup_while_down[:2] == (503, PROBLEM_JSON)
    assert tally.lost == 0, tally.lost_ids
    assert tally.succeeded == len(expected) and tally.failed == tally.wrong == 0
    assert workers[0].popen.poll() is None, "the worker must reconnect without a restart"
