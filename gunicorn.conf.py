"""Gunicorn settings, read automatically by `gunicorn app:app` from the repo root."""

import gc
import os
import tempfile

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
# Load the app once in the master: a bad configuration stops gunicorn with one line
# instead of a loop of workers failing to boot, and workers share the loaded code.
preload_app = True
# No control socket: nothing here uses it, and it would be written under $HOME.
control_socket_disable = True
accesslog = "-"
errorlog = "-"

# /metrics adds up every worker process's counts from files here (prometheus-client's
# multiprocess mode). Set before the app loads; a fresh directory each start, so no
# counts of an earlier run's processes linger.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prometheus-")


def when_ready(server: object) -> None:
    """Freeze the preloaded app's objects before any worker is forked.

    The garbage collector then never scans them again (a full collection of the loaded app
    takes ~90 ms) nor writes to their pages, which workers keep sharing with the master.
    """
    gc.freeze()


def post_fork(server: object, worker: object) -> None:
    """Forget database connections the worker inherited from the preloading master."""
    from app import app
    from project.forking import forget_inherited_connections

    forget_inherited_connections(app)


def child_exit(server: object, worker: object) -> None:
    """Fold an exited worker's metrics into the totals (its live gauges go)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
