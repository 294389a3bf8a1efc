"""Workers killed or stopped mid-batch: every task still reaches its final state."""

import json
import signal
import time
from pathlib import Path

import pytest

from harness.processes import Process, start_worker, wait_for
from harness.servers import PrivateRedis
from tests.support import account, report, submit_divisions

TASKS = 200


def succeeded_count(worker: Process) -> int:
    return worker.output().count("succeeded in")


def test_sigkilled_worker_loses_no_task(
    request: pytest.FixtureRequest,
    fault_server: str,
    fault_env: dict[str, str],
    log_dir: Path,
    workers: list[Process],
) -> None:
    workers.append(start_worker(fault_env, log_dir, concurrency=2))
    expected = submit_divisions(fault_server, TASKS)
    wait_for(lambda: succeeded_count(workers[0]) >= 20, 60, "the worker to be mid-batch")
    killed_at = time.monotonic()
    workers[0].stop(signal.SIGKILL)  # the main process: its pool children die with it
    workers.append(start_worker(fault_env, log_dir, concurrency=2))

    visibility_timeout_s = int(fault_env["CELERY_VISIBILITY_TIMEOUT"])
    tally = account(fault_server, expected, workers, killed_at, timeout=visibility_timeout_s + 60)
    report(request, tally.line("worker SIGKILL"))
    assert tally.lost == 0, tally.lost_ids
    assert tally.succeeded == TASKS and tally.failed == tally.wrong == 0


def test_sigtermed_worker_finishes_or_hands_back_its_tasks(
    request: pytest.FixtureRequest,
    fault_server: str,
    fault_env: dict[str, str],
    log_dir: Path,
    workers: list[Process],
) -> None:
    slow_env = {**fault_env, "DIVIDE_DELAY_SECONDS": "0.5"}
    workers.append(start_worker(slow_env, log_dir, concurrency=2))
    expected = submit_divisions(fault_server, 40)
    wait_for(lambda: succeeded_count(workers[0]) >= 4, 60, "the worker to be mid-batch")
    stopped_at = time.monotonic()
    assert workers[0].stop(signal.SIGTERM) == 0  # warm shutdown, as `docker compose stop`
    done_before_restart = succeeded_count(workers[0])
    workers.append(start_worker(slow_env, log_dir, concurrency=2))

    tally = account(fault_server, expected, workers, stopped_at, timeout=60)
    report(request, tally.line("worker SIGTERM"))
    assert tally.lost == 0, tally.lost_ids
    assert tally.succeeded == 40 and tally.failed == tally.wrong == 0
    # Warm shutdown hands queued tasks back at once: no visibility timeout wait.
    assert tally.duplicates == 0
    assert done_before_restart < 40


def test_a_task_the_broker_lost_is_published_again_and_the_queued_ones_are_not(
    request: pytest.FixtureRequest,
    fault_server: str,
    fault_env: dict[str, str],
    private_redis: PrivateRedis,
    log_dir: Path,
    workers: list[Process],
) -> None:
    expected = submit_divisions(fault_server, 40)  # no worker yet: all stay queued
    # What a worker SIGKILLed between kombu's BRPOP and its note of the message as
    # unacknowledged leaves: the message gone from Redis, the record PENDING (kombu #305).
    lost_id = json.loads(private_redis.take("celery"))["headers"]["id"]
    lost_at = time.monotonic()
    # One process at 0.25 s a task: the last wait about 10 s in the queue, well past
    # TASK_LOST_AFTER_SECONDS, and must not be published again.
    slow_env = {
        **fault_env,
        "DIVIDE_DELAY_SECONDS": "0.25",
        "OUTBOX_SWEEP_SECONDS": "0.5",
        "TASK_LOST_AFTER_SECONDS": "3",
    }
    workers.append(start_worker(slow_env, log_dir, concurrency=1))

    tally = account(fault_server, expected, workers, lost_at, timeout=60)
    report(request, tally.line("message lost by the broker"))
    assert tally.lost == 0, tally.lost_ids
    assert tally.succeeded == 40 and tally.failed == tally.wrong == tally.duplicates == 0
    republished = [line for line in workers[0].output().splitlines() if "published again" in line]
    assert len(republished) == 1 and lost_id in republished[0], republished
