"""A Compose project of this repo for the end-to-end tests: its own name, port and image tag."""

import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid

from harness.processes import REPO_ROOT, free_port, wait_for
from tests.support import bearer

APP_SETTINGS = {
    "FLASK_CONFIG", "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "SECRET_KEY",
    "WEB_BIND", "FLOWER_BIND", "TRUSTED_PROXIES",
}  # fmt: skip


def docker_engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Stack:
    """A Compose project of this repo with its own name, port and image tag."""

    def __init__(self) -> None:
        self.port = free_port()
        # The test session's own DATABASE_URL etc. must not leak into the stack.
        inherited = {k: v for k, v in os.environ.items() if k not in APP_SETTINGS}
        self.env = {
            **inherited,
            "COMPOSE_PROJECT_NAME": f"e2e-{uuid.uuid4().hex[:8]}",
            "WEB_PORT": str(self.port),
            "APP_IMAGE": "flask-celery-app:e2e",
            "DIVIDE_DELAY_SECONDS": "1",
            # A short time limit makes the visibility timeout 20 s, so a killed worker's
            # tasks come back within the test.
            "CELERY_TASK_TIME_LIMIT": "10",
            "FLOWER_PORT": str(free_port()),
            "FLOWER_BASIC_AUTH": "e2e:e2e-password",
            # The tests' bursts stay within the limits; test_rate_limits.py proves them.
            "RATE_LIMIT_WRITES": "10000/minute",
            "RATE_LIMIT_READS": "100000/minute",
        }
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.token = ""  # made with `docker compose exec web flask tokens create` once up

    def compose(self, *args: str, timeout: float = 600, check: bool = True):
        """Run `docker compose ARGS` from the repo root, as typed."""
        result = subprocess.run(
            ["docker", "compose", *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed:\n{result.stderr}")
        return result

    def request(
        self, method: str, path: str, body: dict | None = None, authenticated: bool = True
    ) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {
            "Content-Type": "application/json",
            **bearer(self.token if authenticated else None),
        }
        request = urllib.request.Request(self.base_url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def finished_task(self, url: str) -> dict:
        def final() -> dict | None:
            _, body = self.request("GET", url)
            return body if body["state"] in ("SUCCESS", "FAILURE") else None

        return wait_for(final, 60, f"{url} to finish", interval=0.5)
