"""The worker's healthcheck: can this worker receive and run a task right now?

`celery inspect ping` is answered by the worker's control channel, which keeps working
when the task consumer has stalled (celery #8030, #8082). This sends a canary task to
this worker's own queue (`worker_direct`) and waits for it to run (a worker whose every
process runs a task is busy, not stalled: it says so when asked). After N
failures in a row while Redis answers (--restart-after), it ends the worker's main
process (SIGTERM, then SIGKILL two failures later if it is still there) so that the
container's restart policy starts a fresh one: no Docker socket needed. While Redis does
not answer, the worker is unhealthy but not ended: a restart would not help, and the
web's /readyz says 503 meanwhile.

Usage: python -m project.health.worker_probe [--restart-after N] [NODENAME]
"""

import argparse
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

from celery import Celery

CANARY_TIMEOUT_SECONDS = 8.0
BROKER_TIMEOUT_SECONDS = 2.0


def pidfile(nodename: str) -> Path:
    """Where a ready worker notes its main process id (see celery_utils.note_worker_pid)."""
    return Path(tempfile.gettempdir()) / f"celery-worker-{nodename}.pid"


def passed_file(nodename: str) -> Path:
    """Touched at each pass: scripts/worker-healthcheck answers from it for a few seconds."""
    return Path(tempfile.gettempdir()) / f"celery-worker-{nodename}.passed"


def failures_file(nodename: str) -> Path:
    """Where the probe counts its failures in a row."""
    return Path(tempfile.gettempdir()) / f"celery-worker-{nodename}.failures"


def broker_answers(celery: Celery) -> bool:
    """Say whether Redis answers a PING within a couple of seconds."""
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
            connection.default_channel.client.ping()
        return True
    except Exception:  # any failure to reach it
        return False


def canary_runs(celery: Celery, nodename: str) -> bool:
    """Send a canary to this worker's own queue; say whether it ran within the timeout."""
    from celery.utils.nodenames import worker_direct

    from project.health.tasks import CANARY_KEY, canary
    from project.tasks.records import recorded_by_caller

    nonce = uuid.uuid4().hex
    with recorded_by_caller():  # a probe, not work: no task record
        canary.apply_async((nonce,), queue=worker_direct(nodename), expires=CANARY_TIMEOUT_SECONDS)
    client = celery.backend.client
    key = CANARY_KEY.format(nonce=nonce)
    deadline = time.monotonic() + CANARY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if client.get(key) is not None:
            client.delete(key)
            return True
        time.sleep(0.1)
    return False


def every_process_busy(celery: Celery, nodename: str) -> str | None:
    """Say so when every pool process runs a task (the canary cannot run yet), else None."""
    inspect = celery.control.inspect([nodename], timeout=BROKER_TIMEOUT_SECONDS)
    try:
        active = (inspect.active() or {}).get(nodename)
        stats = (inspect.stats() or {}).get(nodename) if active else None
    except Exception:  # no answer is not an answer that it is busy
        return None
    if not active or stats is None:
        return None
    processes = stats["pool"].get("max-concurrency", 0)
    if processes and len(active) >= processes:
        return f"{nodename} is busy: all {processes} processes run tasks"
    return None


def end_worker(nodename: str, sig: signal.Signals) -> str:
    """Signal the worker's main process to end; say what was done."""
    try:
        pid = int(pidfile(nodename).read_text())
        if b"celery" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return f"pid {pid} is not a Celery worker; nothing ended"
        os.kill(pid, sig)
    except (OSError, ValueError) as error:
        return f"could not end the worker ({error})"
    return f"sent {sig.name} to the worker (pid {pid}) so that it restarts"


def probe(nodename: str, restart_after: int) -> tuple[bool, str]:
    """Return whether the worker is healthy, and a line that says why."""
    from app import celery  # the worker's own app and settings

    failures = failures_file(nodename)
    if not pidfile(nodename).exists():
        return False, f"{nodename} is not ready yet"
    if not broker_answers(celery):
        failures.write_text("0")  # not the worker's fault: never restart for it
        return False, "Redis does not answer; the worker waits for it (not restarted)"
    if canary_runs(celery, nodename):
        failures.write_text("0")
        return True, f"{nodename} ran a canary task"
    busy = every_process_busy(celery, nodename)
    if busy:
        failures.write_text("0")  # the canary waits its turn behind running tasks
        return True, busy
    count = (int(failures.read_text() or 0) if failures.exists() else 0) + 1
    failures.write_text(str(count))
    line = (
        f"{nodename} did not run a canary task within {CANARY_TIMEOUT_SECONDS:g} s "
        f"({count} in a row)"
    )
    if restart_after and count == restart_after:
        line += "; " + end_worker(nodename, signal.SIGTERM)  # a soft shutdown
    elif restart_after and count >= restart_after + 2:  # still there: too stuck to stop
        line += "; " + end_worker(nodename, signal.SIGKILL)
    return False, line


def main() -> None:
    """Exit 0 when the worker runs a canary task, 1 otherwise (with a one-line reason)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nodename", nargs="?", default=f"celery@{socket.gethostname()}")
    parser.add_argument("--restart-after", type=int, default=0, metavar="N")
    arguments = parser.parse_args()
    healthy, line = probe(arguments.nodename, arguments.restart_after)
    if healthy:
        passed_file(arguments.nodename).touch()
    print(line)
    sys.exit(0 if healthy else 1)


if __name__ == "__main__":
    main()
