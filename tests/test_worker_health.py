"""Workers that heal themselves: the canary healthcheck, memory caps and soft shutdown."""

import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from harness.processes import BIN, REPO_ROOT, Process, start_worker, wait_for
from project import db
from project.tasks.models import TaskRecord
from tests.support import report, run_check

PROBE = [str(BIN / "python"), "-m", "project.health.worker_probe"]


def probe(env: dict[str, str], nodename: str, *args: str) -> tuple[int, str]:
    """Run the worker's healthcheck as Compose does; return its exit code and its line."""
    return run_check([*PROBE, *args, nodename], env)


def wait_until_running(app: Flask, task_ids: list[str]) -> None:
    """Wait until a pool process has claimed each task (its record says STARTED)."""

    def running() -> bool:
        with app.app_context():
            query = db.select(TaskRecord.state).where(TaskRecord.id.in_(task_ids))
            return list(db.session.scalars(query)) == ["STARTED"] * len(task_ids)

    wait_for(running, 30, f"{len(task_ids)} tasks to start")


@pytest.fixture
def own_queue_env(migrated: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Settings for a worker reading a queue of this test alone (and its own temp dir)."""
    return {
        **migrated,
        "CELERY_TASK_DEFAULT_QUEUE": f"health-{uuid.uuid4().hex[:8]}",
        "TMPDIR": str(tmp_path),  # where the worker notes its pid and the probe its failures
    }


@pytest.fixture
def test_worker(own_queue_env: dict[str, str], log_dir: Path) -> Iterator[Process]:
    worker = start_worker(own_queue_env, log_dir, extra=("--include", "tests.worker_tasks"))
    yield worker
    worker.stop()


def test_a_ready_worker_runs_the_canary(own_queue_env: dict[str, str], test_worker: Process):
    passed = Path(own_queue_env["TMPDIR"]) / f"celery-worker-{test_worker.node}.passed"
    passed.unlink()  # becoming ready counted as a first pass; the canary must earn its own
    code, line = probe(own_queue_env, test_worker.node)
    assert (code, line) == (0, f"{test_worker.node} ran a canary task")
    assert passed.exists()  # what scripts/worker-healthcheck answers from until it is stale


def test_becoming_ready_counts_as_a_pass_and_stopping_forgets_it(
    own_queue_env: dict[str, str], log_dir: Path
) -> None:
    # So `docker compose up --wait` sees a healthy worker a second after it is ready,
    # without waiting for a first canary.
    worker = start_worker(own_queue_env, log_dir)
    notes = Path(own_queue_env["TMPDIR"]) / f"celery-worker-{worker.node}"
    try:
        assert Path(f"{notes}.pid").read_text() == str(worker.pid)
        assert time.time() - Path(f"{notes}.passed").stat().st_mtime < 60
    finally:
        worker.stop()
    assert not Path(f"{notes}.pid").exists()
    assert not Path(f"{notes}.passed").exists()


def test_the_healthcheck_script_answers_from_a_recent_pass(own_queue_env: dict[str, str]) -> None:
    # Compose runs it every second: between canaries (at most one per 10 s) it answers from the
    # last pass, and before the worker is ready from the missing pid file, without Python.
    env = {**own_queue_env, "HOSTNAME": "box", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    notes = Path(own_queue_env["TMPDIR"]) / "celery-worker-celery@box"

    def check() -> tuple[int, str]:
        return run_check([str(REPO_ROOT / "scripts" / "worker-healthcheck")], env)

    assert check() == (1, "celery@box is not ready yet")
    Path(f"{notes}.pid").write_text("1")
    Path(f"{notes}.passed").touch()
    assert check() == (0, "celery@box passed a check less than 10 s ago")
    stale = time.time() - 11
    os.utime(f"{notes}.passed", (stale, stale))
    # Stale: the canary runs, and no worker answers to that name.
    assert check() == (1, "celery@box did not run a canary task within 8 s (1 in a row)")


def test_a_worker_that_is_not_ready_is_unhealthy(own_queue_env: dict[str, str]) -> None:
    code, line = probe(own_queue_env, "celery@nowhere-ready")
    assert (code, line) == (1, "celery@nowhere-ready is not ready yet")


def test_a_busy_worker_is_healthy(
    app: Flask, own_queue_env: dict[str, str], test_worker: Process
) -> None:
    from tests.worker_tasks import hold

    queue = own_queue_env["CELERY_TASK_DEFAULT_QUEUE"]
    with app.app_context():  # one for each pool process
        ids = [hold.apply_async((15,), queue=queue).id for _ in range(2)]
    wait_until_running(app, ids)
    code, line = probe(own_queue_env, test_worker.node)
    assert (code, line) == (0, f"{test_worker.node} is busy: all 2 processes run tasks")


def test_redis_down_is_unhealthy_but_never_ends_the_worker(
    own_queue_env: dict[str, str], test_worker: Process
) -> None:
    no_redis = {**own_queue_env, "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}
    for _ in range(3):
        code, line = probe(no_redis, test_worker.node, "--restart-after", "1")
        assert (code, line) == (
            1,
            "Redis does not answer; the worker waits for it (not restarted)",
        )
    assert test_worker.popen.poll() is None


def test_a_stalled_worker_is_ended_after_three_failures(
    request: pytest.FixtureRequest, own_queue_env: dict[str, str], test_worker: Process
) -> None:
    # A stopped main process receives nothing, as a stalled consumer; its pool is idle.
    os.kill(test_worker.pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        lines = [probe(own_queue_env, test_worker.node, "--restart-after", "3") for _ in range(3)]
    finally:
        os.kill(test_worker.pid, signal.SIGCONT)  # lets it act on the SIGTERM it was sent
    assert [code for code, _ in lines] == [1, 1, 1]
    assert lines[0][1].endswith("(1 in a row)")
    assert re.search(
        r"\(3 in a row\); sent SIGTERM to the worker \(pid \d+\) so that it restarts$", lines[2][1]
    )
    exit_code = test_worker.popen.wait(60)
    report(
        request, f"stalled worker ended after {time.monotonic() - started:.0f} s, exit {exit_code}"
    )


def test_a_pool_process_past_the_memory_cap_is_replaced(
    request: pytest.FixtureRequest, app: Flask, own_queue_env: dict[str, str], log_dir: Path
) -> None:
    env = {**own_queue_env, "CELERY_WORKER_MAX_MEMORY_PER_CHILD": str(150 * 1024)}
    worker = start_worker(env, log_dir, concurrency=1, extra=("--include", "tests.worker_tasks"))
    try:
        from tests.worker_tasks import leak

        queue = env["CELERY_TASK_DEFAULT_QUEUE"]
        with app.app_context():
            pids = [leak.apply_async((60,), queue=queue).get(timeout=30) for _ in range(6)]
        log = worker.output()
        replaced = len(re.findall(r"pool process \d+ replaced: it used \d+ KiB, past", log))
        report(request, f"memory cap 150 MiB, 6 tasks leaking 60 MiB: pool pids={len(set(pids))}")
        assert replaced >= 2, log
        assert len(set(pids)) >= 3  # each process kept at most ~3 tasks' leaks
        assert worker.popen.poll() is None
    finally:
        worker.stop()


def test_soft_shutdown_finishes_short_tasks_and_hands_back_long_ones(
    request: pytest.FixtureRequest, app: Flask, own_queue_env: dict[str, str], log_dir: Path
) -> None:
    # As compose.yml runs the worker: SIGTERM starts the soft shutdown.
    env = {
        **own_queue_env,
        "REMAP_SIGTERM": "SIGQUIT",
        "CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT": "4",
    }
    extra = ("--include", "tests.worker_tasks")
    worker = start_worker(env, log_dir, extra=extra)
    from tests.worker_tasks import hold

    queue = env["CELERY_TASK_DEFAULT_QUEUE"]
    with app.app_context():
        ids = short, long = [hold.apply_async((s,), queue=queue).id for s in (2, 20)]
    wait_until_running(app, ids)
    started = time.monotonic()
    worker.stop(signal.SIGTERM, timeout=30)
    stopped_in = time.monotonic() - started
    with app.app_context():
        states = {r.id: r for r in db.session.scalars(db.select(TaskRecord))}
        assert states[short].state == "SUCCESS"
        assert states[long].state != "SUCCESS"
    successor = start_worker(env, log_dir, extra=extra)
    try:
        with app.app_context():

            def long_finished() -> bool:
                db.session.expire_all()
                return db.session.get(TaskRecord, states[long].seq).state == "SUCCESS"

            wait_for(long_finished, 40, "the handed-back task to finish")
        runs = successor.output().count(f"tests.worker_tasks.hold[{long}] succeeded")
        report(
            request, f"soft shutdown: stopped in {stopped_in:.1f} s, long task ran {runs}x after"
        )
        assert runs == 1
        assert f"hold[{long}] succeeded" not in worker.output()
        assert stopped_in < 4 + 10  # the soft timeout and the cold shutdown, not the 20 s task
    finally:
        successor.stop()
