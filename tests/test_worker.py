"""A real `celery -A app.celery worker`: its logs, redelivery, sessions and fork safety."""

import os
import re
import signal
import uuid
from pathlib import Path

from celery.result import AsyncResult
from flask import Flask
from sqlalchemy import select, text

from harness.processes import BIN, Process, child_pids, kill, run_cli, start_worker, wait_for
from project import db
from project.celery_utils import forget_connections_after_fork
from project.tasks.models import TaskRecord
from project.users.tasks import divide

SHELL_DELAY = """\
from project.users.tasks import divide
result = divide.delay(1, 2)
print('TASK', result.id)
"""


def wait_for_state(app: Flask, task_id: str, states: set[str], timeout: float = 30) -> str:
    """Wait until the API shows the task in one of `states` (STARTED lives in its record)."""
    client = app.test_client()
    return wait_for(
        lambda: (state := client.get(f"/tasks/{task_id}").get_json()["state"]) in states and state,
        timeout,
        f"task {task_id} to reach {states}",
    )


def test_tutorial_delay_logs_received_and_succeeded(
    app: Flask, migrated: dict[str, str], worker: Process
) -> None:
    result = run_cli([str(BIN / "flask"), "shell"], migrated, stdin=SHELL_DELAY)
    task_id = re.search(r"TASK (\S+)", result.stdout).group(1)
    task = f"project.users.tasks.divide[{task_id}]"
    worker.wait_for_output(f"Task {task} succeeded in")
    log = worker.output()
    assert f"Task {task} received" in log
    assert re.search(rf"Task {re.escape(task)} succeeded in [0-9.]+s: 0\.5\n", log)


def test_worker_starts_without_deprecation_warnings(worker: Process) -> None:
    startup = worker.output().split(" ready.")[0]
    assert "deprecat" not in startup.lower(), startup


def test_task_log_lines_carry_the_task_id(app: Flask, worker: Process) -> None:
    with app.app_context():
        task_id = divide.delay(6, 3).id
    worker.wait_for_output(f"project.users.tasks.divide[{task_id}]: dividing 6 by 3")


def test_result_get_waits_for_the_worker(app: Flask, worker: Process) -> None:
    with app.app_context():
        assert divide.delay(1, 8).get(timeout=30) == 0.125


def test_killed_pool_process_hands_its_task_back(
    app: Flask, migrated: dict[str, str], log_dir: Path
) -> None:
    queue = f"redelivery-{uuid.uuid4().hex[:6]}"
    slow = start_worker(
        {**migrated, "DIVIDE_DELAY_SECONDS": "3"}, log_dir, concurrency=1, extra=("-Q", queue)
    )
    try:
        with app.app_context():
            task_id = divide.apply_async((1, 4), queue=queue).id
        wait_for_state(app, task_id, {"STARTED"})
        (pool_process,) = child_pids(slow.pid)
        kill(pool_process)
        assert wait_for_state(app, task_id, {"SUCCESS", "FAILURE"}) == "SUCCESS"
        assert AsyncResult(task_id).result == 0.25
        assert "WorkerLostError" in slow.output() or "signal 9" in slow.output()
    finally:
        slow.stop()


def test_task_session_is_removed_on_success_and_failure(
    app: Flask, migrated: dict[str, str], log_dir: Path
) -> None:
    queue = f"sessions-{uuid.uuid4().hex[:6]}"
    sessions_worker = start_worker(
        migrated, log_dir, concurrency=1, extra=("-Q", queue, "--include", "tests.worker_tasks")
    )
    try:
        from tests.worker_tasks import touch_database

        with app.app_context():
            results = [touch_database.apply_async((fail,), queue=queue) for fail in (False, True)]
        for result in results:
            wait_for_state(app, result.id, {"SUCCESS", "FAILURE"})
        with app.app_context():
            stuck = db.session.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
                )
            ).scalar_one()
        assert stuck == 0
    finally:
        sessions_worker.stop()


def test_forked_process_opens_its_own_database_connection(app: Flask) -> None:
    with app.app_context():
        parent_backend = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        db.session.remove()  # the connection goes back to the pool, as between tasks
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: what a Celery pool process does after fork
        try:
            forget_connections_after_fork()
            with app.app_context():
                backend = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            os.write(write_end, str(backend).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child_backend = int(os.read(read_end, 64))
    os.waitpid(child, 0)
    os.close(read_end)
    assert child_backend != parent_backend
    with app.app_context():  # the parent's pooled connection still works
        assert db.session.execute(text("SELECT pg_backend_pid()")).scalar_one() == parent_backend


def test_sigterm_stops_the_worker_cleanly(migrated: dict[str, str], log_dir: Path) -> None:
    worker = start_worker(migrated, log_dir, concurrency=1)
    assert worker.stop(signal.SIGTERM) == 0


def test_an_expired_task_is_recorded_revoked_not_left_pending(app: Flask, worker: Process) -> None:
    with app.app_context():
        task_id = divide.apply_async((1, 2), expires=-1).id  # expired before it arrives
    worker.wait_for_output(f"Discarding revoked task: project.users.tasks.divide[{task_id}]")

    def record_state() -> str | None:
        with app.app_context():
            return db.session.scalar(select(TaskRecord.state).where(TaskRecord.id == task_id))

    # The record itself (the API could answer from Redis): left PENDING, it would look
    # lost to every worker's sweeper (project/tasks/redelivery.py).
    wait_for(lambda: record_state() == "REVOKED", 10, "the record to say REVOKED")
