"""The services a benchmark run uses: its own database and Redis db, workers, gunicorn."""

import os
import secrets
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import redis

from harness.processes import BIN, Process, run_cli, start_gunicorn, start_worker
from harness.services import TEST_DATABASE_URL, TEST_REDIS_URL, unreachable_services

# compose.yml's defaults.
WEB_CONCURRENCY = "2"
GUNICORN_THREADS = "4"
WORKER_CONCURRENCY = 2
RATE_LIMIT = "100000000/minute"
MAX_QUEUED_TASKS = str(10**9)


class BenchStack:
    """A database and Redis db of the run's own, and the processes started on them."""

    def __enter__(self) -> "BenchStack":
        problem = unreachable_services()
        if problem:
            raise SystemExit(problem)
        self.log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
        self.databases: list[str] = []
        self.processes: list[Process] = []
        self.redis_db = self._claim_redis_db()
        self.redis_url = urlunsplit(urlsplit(TEST_REDIS_URL)._replace(path=f"/{self.redis_db}"))
        self.database_url = self.create_database(migrate=True)
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "FLASK_CONFIG": "production",
            "SECRET_KEY": secrets.token_hex(32),
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.redis_url,
            "CELERY_RESULT_BACKEND": self.redis_url,
            "DIVIDE_DELAY_SECONDS": "0",
            "WEB_CONCURRENCY": WEB_CONCURRENCY,
            "GUNICORN_THREADS": GUNICORN_THREADS,
            # Production config: API tokens required; rate limits counted, but set high.
            "RATE_LIMIT_WRITES": RATE_LIMIT,
            "RATE_LIMIT_READS": RATE_LIMIT,
            # Web rows queue faster than one worker drains; a full queue would turn them into 503s.
            "MAX_QUEUED_TASKS": MAX_QUEUED_TASKS,
        }
        os.environ.update({k: v for k, v in self.env.items() if k != "PATH"})
        self.token = self._create_token()
        return self

    def _create_token(self) -> str:
        result = run_cli([str(BIN / "flask"), "tokens", "create", "bench"], self.env)
        if result.returncode != 0:
            raise SystemExit(f"flask tokens create failed: {result.stderr.strip()}")
        return result.stdout.strip()

    @property
    def auth_headers(self) -> tuple[str, ...]:
        """wrk's -H arguments that carry the run's API token."""
        return (f"Authorization: Bearer {self.token}",)

    def __exit__(self, *_: object) -> None:
        for process in self.processes:
            process.stop()
        redis.Redis.from_url(self.redis_url).flushdb()
        for name in self.databases:
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(self.log_dir, ignore_errors=True)

    def _claim_redis_db(self) -> int:
        for number in range(15, 0, -1):
            url = urlunsplit(urlsplit(TEST_REDIS_URL)._replace(path=f"/{number}"))
            client = redis.Redis.from_url(url)
            if client.dbsize() == 0 and client.set("bench-claim", "1", nx=True):
                return number
        raise SystemExit(f"Redis at {TEST_REDIS_URL}: no empty db number for the benchmark")

    def _admin(self, sql: str) -> None:
        connection = psycopg2.connect(TEST_DATABASE_URL)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql)
        connection.close()

    def create_database(self, migrate: bool) -> str:
        """Create a database of this run's own (migrated if asked) and return its URL."""
        name = f"bench_{uuid.uuid4().hex[:10]}"
        self._admin(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        url = urlunsplit(urlsplit(TEST_DATABASE_URL)._replace(path=f"/{name}"))
        if migrate:
            result = run_cli(
                [str(BIN / "flask"), "db", "upgrade"], {**os.environ, "DATABASE_URL": url}
            )
            if result.returncode != 0:
                raise SystemExit(f"flask db upgrade failed: {result.stderr.strip()}")
            if self.databases[1:]:  # not the run's first: accept the run's token there too
                self.copy_tokens(url)
        return url

    def copy_tokens(self, url: str) -> None:
        """Copy the run's API tokens (their hashes) into the database at `url`."""
        source = psycopg2.connect(self.database_url)
        with source.cursor() as cursor:
            cursor.execute("SELECT name, lookup, secret_hash, created_at FROM api_tokens")
            tokens = cursor.fetchall()
        source.close()
        target = psycopg2.connect(url)
        with target, target.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO api_tokens (name, lookup, secret_hash, created_at) "
                "VALUES (%s, %s, %s, %s)",
                tokens,
            )
        target.close()

    def sql(self, statement: str, url: str | None = None) -> None:
        connection = psycopg2.connect(url or self.database_url)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)
        connection.close()

    def worker(self, celery_app: str = "app.celery", **env: str) -> Process:
        process = start_worker(
            {**self.env, **env}, self.log_dir, WORKER_CONCURRENCY, celery_app=celery_app
        )
        self.processes.append(process)
        return process

    def gunicorn(self, target: str = "app:app", config: str | None = None, **env: str):
        process, url = start_gunicorn({**self.env, **env}, self.log_dir, target, config)
        self.processes.append(process)
        return process, url

    def stop(self, process: Process) -> None:
        process.stop()
        self.processes.remove(process)
