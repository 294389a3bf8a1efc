"""Private Redis and PostgreSQL servers a run may stop and restart at will."""

import glob
import os
import shutil
import subprocess
from pathlib import Path

from harness.processes import free_port, wait_for


class PrivateRedis:
    """A redis-server on its own port with append-only persistence, as in compose.yml."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--save", "",
                "--maxmemory-policy", "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self.answers, 20, f"redis on port {self.port}")

    def answers(self) -> bool:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
        )
        return result.stdout.strip() == "PONG"

    def stop(self) -> None:
        """Shut down as `docker compose restart` does: SIGTERM, which writes the AOF."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def take(self, queue: str) -> str:
        """Take the next message a worker would get off `queue`, as kombu's BRPOP does."""
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), "rpop", queue], capture_output=True, text=True
        )
        return result.stdout.strip()

    def queue_length(self, queue: str) -> int:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), "llen", queue], capture_output=True, text=True
        )
        return int(result.stdout.strip())


def postgres_bindir() -> Path:
    """Return the directory of the newest PostgreSQL server binaries installed."""
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    if not bindirs:
        raise FileNotFoundError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql "
            "(apt-get install postgresql)"
        )
    return Path(bindirs[-1])


class PrivatePostgres:
    """A PostgreSQL cluster of this test run's own (initdb), with trust auth on loopback."""

    def __init__(self, directory: Path) -> None:
        self.bindir = postgres_bindir()
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        # PostgreSQL refuses to run as root; run it as the postgres user when we are root.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def create(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.directory / "server.log"), "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
