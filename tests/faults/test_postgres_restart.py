"""PostgreSQL restarted under request load: 503 only while it is down, then straight back."""

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from celery.result import AsyncResult
from flask import Flask

from harness.processes import BIN, Process, run_cli, start_gunicorn, start_worker, wait_for
from harness.servers import PrivatePostgres
from tests.support import PROBLEM_JSON, BackgroundLoad, http, report

CLIENTS = 4
DOWN_S = 3


class Load(BackgroundLoad):
    """Clients sending reads and writes in a loop, recording (start, end, status, type)."""

    def __init__(self, base_url: str, user_id: int) -> None:
        super().__init__()
        self.base_url = base_url
        self.user_id = user_id
        self.results: list[list[tuple[float, float, int, str]]] = [[] for _ in range(CLIENTS)]
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(CLIENTS)]

    def _run(self, n: int) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            if n % 2:
                name = f"load-{uuid.uuid4().hex[:10]}"
                body = {"username": name, "email": f"{name}@example.com"}
                status, content_type, _ = http("POST", f"{self.base_url}/users/", body)
            else:
                status, content_type, _ = http("GET", f"{self.base_url}/users/{self.user_id}")
            self.results[n].append((started, time.monotonic(), status, content_type))
            time.sleep(0.02)


def test_postgres_restart_costs_only_503s_while_down(
    request: pytest.FixtureRequest,
    app_with: Callable[..., Flask],
    private_postgres: PrivatePostgres,
    fault_env: dict[str, str],
    log_dir: Path,
    workers: list[Process],
) -> None:
    env = {**fault_env, "DATABASE_URL": private_postgres.url}
    assert run_cli([str(BIN / "flask"), "db", "upgrade"], env).returncode == 0
    server, base_url = start_gunicorn(env, log_dir)
    # A queue of its own: the load's user creations queue welcome tasks on the default one.
    queue = "touch-database"
    workers.append(
        start_worker(env, log_dir, concurrency=1, extra=("-I", "tests.worker_tasks", "-Q", queue))
    )
    app = app_with(
        **{key: env[key] for key in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")}
    )
    try:
        status, _, user = http("POST", f"{base_url}/users/", {"username": "u", "email": "u@x.io"})
        assert status == 201
        with Load(base_url, user["id"]) as load:
            time.sleep(1)
            private_postgres.stop()
            stopped_at = time.monotonic()
            from tests.worker_tasks import touch_database

            with app.app_context():
                # Runs while the database is down.
                task_id = touch_database.apply_async((False,), queue=queue).id
            time.sleep(DOWN_S)
            private_postgres.start()
            up_at = time.monotonic()
            time.sleep(2)
        wait_for(lambda: AsyncResult(task_id).state == "SUCCESS", 90, "the task to succeed")
    finally:
        server.stop()

    outcomes = [outcome for client in load.results for outcome in client]
    server_errors = [o for o in outcomes if o[2] >= 500 and (o[2], o[3]) != (503, PROBLEM_JSON)]
    unavailable = [o for o in outcomes if o[2] == 503]
    first_after_up = [next(o for o in client if o[0] >= up_at) for client in load.results]
    retries = workers[0].output().count(f"touch_database[{task_id}] retry")
    report(
        request,
        f"postgres restart: requests={len(outcomes)} ok={len(outcomes) - len(unavailable)} "
        f"unavailable_503={len(unavailable)} server_errors={len(server_errors)} "
        f"down_s={up_at - stopped_at:.1f} first_after_up_ok="
        f"{sum(o[2] < 500 for o in first_after_up)}/{CLIENTS} task_retries={retries}",
    )
    assert server_errors == []
    assert unavailable, "the load never saw the database down"
    assert all(stopped_at - 1 <= start and end <= up_at + 1 for start, end, *_ in unavailable)
    assert [o[2] < 500 for o in first_after_up] == [True] * CLIENTS
    assert retries >= 1
