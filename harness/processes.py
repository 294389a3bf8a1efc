"""Real processes as users start them: CLI commands, Celery workers, gunicorn."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run_cli(args: list[str], env: dict[str, str], stdin: str | None = None, timeout: float = 60):
    """Run a command from the repo root (as a user types it) and return the finished process."""
    return subprocess.run(
        args,
        cwd=REPO_ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll `condition` until it returns something truthy, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child process whose combined output goes to a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.node = ""  # a Celery worker's node name
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args, cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        """Return everything the process has logged so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        """Wait until the log contains `text`; fail with the log if the process died."""

        def seen() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"process exited early:\n{self.output()}")
            return text in self.output()

        wait_for(seen, timeout, f"{text!r} in {self.log_path.name}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Stop the process (SIGKILL if it outlives `timeout`) and return its exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()
        return self.popen.returncode


def start_worker(
    env: dict[str, str],
    log_dir: Path,
    concurrency: int = 2,
    extra: tuple[str, ...] = (),
    celery_app: str = "app.celery",
) -> Process:
    """Start `celery -A app.celery worker` as users do, and wait until it is ready."""
    name = f"test-{uuid.uuid4().hex[:8]}@%h"
    worker = Process(
        [
            str(BIN / "celery"),
            "-A",
            celery_app,
            "worker",
            "--loglevel=info",
            f"--concurrency={concurrency}",
            "-n",
            name,
            "--without-mingle",
            "--without-gossip",
            *extra,
        ],
        env,
        log_dir / f"worker-{uuid.uuid4().hex[:6]}.log",
    )
    worker.node = name.replace("%h", socket.gethostname())  # for `celery inspect -d`
    worker.wait_for_output(" ready.", timeout=60)
    return worker


def start_beat(env: dict[str, str], log_dir: Path) -> Process:
    """Start `celery -A app.celery beat` as Compose does, and wait until it runs."""
    beat = Process(
        [str(BIN / "celery"), "-A", "app.celery", "beat", "--loglevel=info"],
        env,
        log_dir / f"beat-{uuid.uuid4().hex[:6]}.log",
    )
    beat.wait_for_output("beat: Starting...", timeout=60)
    return beat


def start_gunicorn(
    env: dict[str, str], log_dir: Path, target: str = "app:app", config: str | None = None
) -> tuple[Process, str]:
    """Start `gunicorn app:app` with the repo's gunicorn.conf.py; return it and its base URL."""
    port = free_port()
    server = Process(
        [str(BIN / "gunicorn"), *(["-c", config] if config else []), target],
        {**env, "GUNICORN_BIND": f"127.0.0.1:{port}"},
        log_dir / f"gunicorn-{port}.log",
    )
    base_url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if server.popen.poll() is not None:
            raise AssertionError(f"gunicorn exited early:\n{server.output()}")
        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_for(answers, 30, "gunicorn to answer /healthz")
    return server, base_url


def child_pids(pid: int) -> list[int]:
    """Return the direct children of a process (Linux /proc)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def kill(pid: int) -> None:
    """SIGKILL one process this run started."""
    os.kill(pid, signal.SIGKILL)
