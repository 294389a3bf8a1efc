"""Configuration classes, chosen by name or by the FLASK_CONFIG environment variable.

Every setting is read from the environment when a config object is built (inside
`create_app`), never at import time, so one process can build apps with different
settings.
"""

import ipaddress
import os
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REDIS_URL = "redis://localhost:6379/0"

# Secrets that appear in tutorials and examples; production refuses them.
WELL_KNOWN_SECRETS = {"dev", "secret", "changeme", "change-me", "secret-key", "development"}
MIN_SECRET_KEY_LENGTH = 32
UNACKED_RESTORE_INTERVAL_SECONDS = 10
DEFAULT_MAX_QUEUED_TASKS = 10_000
API_AUTH_CHOICES = ("required", "off")


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it."""


def normalize_database_url(url: str) -> str:
    """Select psycopg2 for PostgreSQL URLs written as `postgres://` or `postgresql://`."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url.removeprefix(prefix)
    return url


Number = TypeVar("Number", int, float)


def env_number(name: str, default: Number) -> Number:
    """Read a number of the default's type from the environment, naming the variable if not."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    kind = type(default)
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def env_networks(name: str) -> list[IPNetwork]:
    """Read comma-separated IP addresses or networks (`10.0.0.5, 172.16.0.0/12`)."""
    networks = []
    for item in os.environ.get(name, "").split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ConfigError(
                    f"{name} must list IP addresses or networks, got {item.strip()!r}"
                ) from None
    return networks


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    """Read one of `choices` from the environment, naming the variable and them if not."""
    value = os.environ.get(name, "").strip() or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def env_rate_limit(name: str, default: str) -> str:
    """Read a rate limit (`60/minute`, `10 per second; 500 per hour`); `off` means none."""
    from limits import parse_many  # imported here: only this setting needs it

    value = os.environ.get(name, "").strip() or default
    if value == "off":
        return ""
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(
            f"{name} must be a rate such as '60/minute' or '10 per second', or 'off'; got {value!r}"
        ) from None
    return value


def env_or_file(name: str) -> str:
    """Return the variable NAME, else the contents of the file NAME_FILE names, else ''.

    The `_FILE` form keeps secrets out of the environment (Docker's convention): Compose
    points it at the generated secrets volume.
    """
    value = os.environ.get(name, "")
    path = os.environ.get(f"{name}_FILE", "")
    if value or not path:
        return value
    try:
        return Path(path).read_text().strip()
    except OSError as error:
        raise ConfigError(f"{name}_FILE={path!r} cannot be read ({error.strerror})") from None


class BaseConfig:
    """Settings shared by every environment."""

    DEBUG = False
    TESTING = False
    DEFAULT_DIVIDE_DELAY_SECONDS = 5.0
    DEFAULT_API_AUTH = "off"
    DEFAULT_RATE_LIMIT_WRITES = "60/minute"
    DEFAULT_RATE_LIMIT_READS = "600/minute"

    def __init__(self) -> None:
        self.SECRET_KEY = env_or_file("SECRET_KEY") or "dev"
        self.SQLALCHEMY_DATABASE_URI = normalize_database_url(
            env_or_file("DATABASE_URL") or f"sqlite:///{REPO_ROOT / 'db.sqlite3'}"
        )
        self.MAX_CONTENT_LENGTH = env_number("MAX_CONTENT_LENGTH", 64 * 1024)
        self.DIVIDE_DELAY_SECONDS = env_number(
            "DIVIDE_DELAY_SECONDS", self.DEFAULT_DIVIDE_DELAY_SECONDS
        )
        # The reverse proxies whose X-Forwarded-* headers are believed; nobody's by default.
        self.TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")
        # Addresses (a Prometheus on the private network) that read /metrics without a token.
        self.METRICS_ALLOW = env_networks("METRICS_ALLOW")
        # `required`: every API request needs `Authorization: Bearer <token>` (project/auth).
        self.API_AUTH = env_choice("API_AUTH", API_AUTH_CHOICES, self.DEFAULT_API_AUTH)
        # Per token, or per client address without one; kept in Redis (project/rate_limits.py).
        self.RATE_LIMIT_WRITES = env_rate_limit("RATE_LIMIT_WRITES", self.DEFAULT_RATE_LIMIT_WRITES)
        self.RATE_LIMIT_READS = env_rate_limit("RATE_LIMIT_READS", self.DEFAULT_RATE_LIMIT_READS)
        self._load_celery_settings()
        self._load_worker_limits()
        self._load_schedule()

    def _load_celery_settings(self) -> None:
        """Set Celery's options under the CELERY_ namespace (new-style names, upper-cased)."""
        time_limit = env_number("CELERY_TASK_TIME_LIMIT", 60)
        visibility_timeout = env_number("CELERY_VISIBILITY_TIMEOUT", 2 * time_limit)
        if visibility_timeout <= time_limit:
            # A shorter visibility timeout would hand a healthy running task to a second worker.
            raise ConfigError(
                "CELERY_VISIBILITY_TIMEOUT must be longer than CELERY_TASK_TIME_LIMIT "
                f"({visibility_timeout} <= {time_limit})"
            )
        # An empty variable (as an .env file copied from .env.example has) means the default.
        self.CELERY_BROKER_URL = env_or_file("CELERY_BROKER_URL") or DEFAULT_REDIS_URL
        self.CELERY_RESULT_BACKEND = env_or_file("CELERY_RESULT_BACKEND") or DEFAULT_REDIS_URL
        backend = "project.celery_backend:PublishOnlyRedisBackend"
        self.CELERY_OVERRIDE_BACKENDS = {"redis": backend, "rediss": backend}
        # Several deployments can share one Redis by giving each its own queue.
        self.CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE") or "celery"
        # POST /tasks/divide answers 503 while this many tasks wait, rather than fill Redis.
        self.MAX_QUEUED_TASKS = env_number("MAX_QUEUED_TASKS", DEFAULT_MAX_QUEUED_TASKS)
        self.CELERY_ACCEPT_CONTENT = ["json"]
        self.CELERY_TASK_SERIALIZER = "json"
        self.CELERY_RESULT_SERIALIZER = "json"
        self.CELERY_RESULT_ACCEPT_CONTENT = ["json"]
        # At-least-once delivery: a task is acknowledged only after it ran, and handed
        # back to the queue if the process running it dies.
        self.CELERY_TASK_ACKS_LATE = True
        self.CELERY_TASK_REJECT_ON_WORKER_LOST = True
        self.CELERY_WORKER_PREFETCH_MULTIPLIER = 1
        self.CELERY_BROKER_TRANSPORT_OPTIONS = {
            "visibility_timeout": visibility_timeout,
            # Look for tasks a dead worker left unacknowledged every 10 s. Kombu's default
            # scans only every 10th time (100 s), which added up to 100 s to every redelivery.
            "unacked_restore_interval": UNACKED_RESTORE_INTERVAL_SECONDS,
            "unacked_restore_throttle": 1,
            # The scan's lock. A worker killed holding it (kombu's default: 300 s) kept every
            # other worker from handing tasks back for 5 minutes; a scan takes milliseconds.
            "unacked_mutex_expire": UNACKED_RESTORE_INTERVAL_SECONDS,
        }
        self.CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": visibility_timeout}
        self.CELERY_TASK_TIME_LIMIT = time_limit
        # The soft limit raises inside the task a little before the hard limit kills it.
        self.CELERY_TASK_SOFT_TIME_LIMIT = env_number(
            "CELERY_TASK_SOFT_TIME_LIMIT", max(1, time_limit - max(1, time_limit // 10))
        )
        # STARTED is written to the task's record by its claim (project/tasks/lifecycle.py),
        # not to Redis: Celery would write it there before a duplicate delivery of a
        # finished task is refused, overwriting the outcome, and it saves a write per task.
        self.CELERY_TASK_TRACK_STARTED = False
        # A task whose process died this many times in a row is failed, not run again.
        self.CELERY_TASK_MAX_DELIVERIES = env_number("CELERY_TASK_MAX_DELIVERIES", 3)
        # The outbox: how often each worker looks for committed tasks never published, and
        # how old such a record must be (a publish in progress is not yet stranded).
        self.OUTBOX_SWEEP_SECONDS = env_number("OUTBOX_SWEEP_SECONDS", 5.0)
        self.OUTBOX_GRACE_SECONDS = env_number("OUTBOX_GRACE_SECONDS", 10.0)
        # A task PENDING this long after its publish, and in no queue, was lost by the broker
        # (a worker killed as it took it): workers publish it again (project/tasks/redelivery.py).
        self.TASK_LOST_AFTER_SECONDS = env_number(
            "TASK_LOST_AFTER_SECONDS", float(visibility_timeout)
        )
        if self.TASK_LOST_AFTER_SECONDS <= 0:
            raise ConfigError("TASK_LOST_AFTER_SECONDS must be more than 0")
        # A task's name and arguments are in its record: Redis keeps its state and result.
        self.CELERY_RESULT_EXTENDED = False
        self.CELERY_RESULT_EXPIRES = env_number("CELERY_RESULT_EXPIRES", 7 * 24 * 3600)
        self.CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
        # When the broker connection drops, running late-ack tasks are cancelled and
        # redelivered (they cannot be acknowledged on the lost connection). Celery 6's
        # default; set explicitly, which also silences its pending-deprecation warning.
        self.CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
        # Fail a publish quickly when the broker is down, so the API can answer 503.
        self.CELERY_TASK_PUBLISH_RETRY_POLICY = {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        }
        self.CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 2
        self.CELERY_REDIS_SOCKET_TIMEOUT = 5
        # Each worker also reads a queue of its own, where its healthcheck sends a canary.
        self.CELERY_WORKER_DIRECT = True

    def _load_worker_limits(self) -> None:
        """Cap what a worker's pool processes may grow to, and how a worker stops."""
        # A pool process is replaced after the task during which it passed this (KiB) or
        # after this many tasks: leaks cost a process restart, not the kernel's OOM killer.
        self.CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_number(
            "CELERY_WORKER_MAX_MEMORY_PER_CHILD", 256 * 1024
        )
        self.CELERY_WORKER_MAX_TASKS_PER_CHILD = env_number(
            "CELERY_WORKER_MAX_TASKS_PER_CHILD", 10000
        )
        # Soft shutdown (a cold shutdown, which SIGTERM starts where REMAP_SIGTERM=SIGQUIT, as
        # in compose.yml): running tasks get this long to finish; the rest are handed back
        # to the queue at once, to run on another worker or after the restart.
        self.CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = env_number(
            "CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT", 30.0
        )

    def _load_schedule(self) -> None:
        """Declare the periodic tasks, which `celery -A app.celery beat` sends (one leader)."""
        self.TASK_RETENTION_DAYS = env_number("TASK_RETENTION_DAYS", 30)
        self.TASK_PURGE_INTERVAL_SECONDS = env_number("TASK_PURGE_INTERVAL_SECONDS", 3600.0)
        if self.TASK_RETENTION_DAYS < 0 or self.TASK_PURGE_INTERVAL_SECONDS <= 0:
            raise ConfigError(
                "TASK_RETENTION_DAYS must be 0 or more and TASK_PURGE_INTERVAL_SECONDS more than 0"
            )
        # Add your own here: {"name": {"task": "...", "schedule": seconds or crontab(...)}}.
        self.CELERY_BEAT_SCHEDULE = {
            "purge-tasks": {
                "task": "project.tasks.tasks.purge_tasks",
                "schedule": self.TASK_PURGE_INTERVAL_SECONDS,
                # A run that waited a whole interval in the queue is dropped, not piled up.
                "options": {"expires": self.TASK_PURGE_INTERVAL_SECONDS},
            },
        }
        # The schedule's state lives in Redis (celery-redbeat), not in a file, and a lock
        # there lets one beat send at a time however many run: the others wait, trying
        # every BEAT_MAX_LOOP_INTERVAL, and one takes over once the leader's lock expires.
        self.CELERY_BEAT_SCHEDULER = "redbeat.RedBeatScheduler"
        self.CELERY_BEAT_MAX_LOOP_INTERVAL = env_number("BEAT_MAX_LOOP_INTERVAL", 5.0)
        self.CELERY_REDBEAT_LOCK_TIMEOUT = env_number("BEAT_LOCK_TIMEOUT_SECONDS", 30)
        if self.CELERY_REDBEAT_LOCK_TIMEOUT <= self.CELERY_BEAT_MAX_LOOP_INTERVAL:
            # The leader renews its lock once a loop: a shorter lock would lapse between.
            raise ConfigError(
                "BEAT_LOCK_TIMEOUT_SECONDS must be longer than BEAT_MAX_LOOP_INTERVAL "
                f"({self.CELERY_REDBEAT_LOCK_TIMEOUT} <= {self.CELERY_BEAT_MAX_LOOP_INTERVAL})"
            )
        # Deployments sharing one Redis (each with its own queue) keep their schedules apart.
        self.CELERY_REDBEAT_KEY_PREFIX = f"redbeat:{self.CELERY_TASK_DEFAULT_QUEUE}:"


class DevelopmentConfig(BaseConfig):
    """Local development: debug on, SQLite by default."""

    DEBUG = True


class TestingConfig(BaseConfig):
    """The test suite: no simulated delay and no rate limits unless a test asks for them."""

    TESTING = True
    DEFAULT_DIVIDE_DELAY_SECONDS = 0.0
    DEFAULT_RATE_LIMIT_WRITES = "off"
    DEFAULT_RATE_LIMIT_READS = "off"


class ProductionConfig(BaseConfig):
    """Production: API tokens required; refuses to start without a real secret and a database."""

    DEFAULT_API_AUTH = "required"

    def __init__(self) -> None:
        super().__init__()
        secret = env_or_file("SECRET_KEY")
        if not secret:
            raise ConfigError("SECRET_KEY (or SECRET_KEY_FILE) must be set in production")
        if len(secret) < MIN_SECRET_KEY_LENGTH or secret.lower() in WELL_KNOWN_SECRETS:
            raise ConfigError(
                f"SECRET_KEY must be a random value of at least {MIN_SECRET_KEY_LENGTH} "
                'characters (python -c "import secrets; print(secrets.token_hex(32))")'
            )
        if not env_or_file("DATABASE_URL"):
            raise ConfigError("DATABASE_URL (or DATABASE_URL_FILE) must be set in production")


config: dict[str, type[BaseConfig]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_config(config_name: str | None = None) -> BaseConfig:
    """Build the config object for a name, FLASK_CONFIG, or `development`."""
    name = config_name or os.environ.get("FLASK_CONFIG") or "development"
    if name not in config:
        choices = ", ".join(sorted(config))
        raise ConfigError(f"FLASK_CONFIG={name!r} is not a known config; choose one of: {choices}")
    return config[name]()
