"""Configuration: read at create_app time, safe Celery settings, psycopg2 URLs."""

import pytest

from project import create_app, ext_celery
from project.config import REPO_ROOT, ConfigError, load_config, normalize_database_url


@pytest.fixture
def database_url(monkeypatch: pytest.MonkeyPatch) -> str:
    """Set DATABASE_URL to a PostgreSQL URL that these tests configure but never connect to."""
    url = "postgresql://app:secret@db.invalid:5432/app"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+psycopg2://u:p@db:5432/app"),
        ("postgresql://u:p@db/app", "postgresql+psycopg2://u:p@db/app"),
        ("postgresql+psycopg2://u@db/app", "postgresql+psycopg2://u@db/app"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_postgres_urls_select_psycopg2(url: str, expected: str) -> None:
    assert normalize_database_url(url) == expected


def test_postgres_url_as_users_write_it_builds_an_engine(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    url = database_url.replace("postgresql://", "postgres://")
    monkeypatch.setenv("DATABASE_URL", url)
    app = create_app("testing")
    with app.app_context():
        from project import db

        assert db.engine.dialect.driver == "psycopg2"


def test_defaults_are_sqlite_at_repo_root_and_local_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "FLASK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    settings = load_config()
    assert type(settings).__name__ == "DevelopmentConfig"
    assert settings.SQLALCHEMY_DATABASE_URI == f"sqlite:///{REPO_ROOT / 'db.sqlite3'}"
    assert settings.CELERY_BROKER_URL == "redis://localhost:6379/0"
    assert settings.CELERY_RESULT_BACKEND == "redis://localhost:6379/0"
    assert settings.DIVIDE_DELAY_SECONDS == 5


def test_redis_brokers_use_the_project_transport_and_tls_ones_kombus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://redis:6379/0")
    conf = create_app("testing").extensions["celery"].conf
    assert conf.broker_transport == "project.celery_broker:Transport"
    monkeypatch.setenv("CELERY_BROKER_URL", "rediss://redis:6380/0")
    conf = create_app("testing").extensions["celery"].conf
    assert conf.broker_transport is None  # kombu's, which turns TLS on by the scheme


def test_settings_are_read_when_create_app_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIVIDE_DELAY_SECONDS", "0.25")
    assert create_app("testing").config["DIVIDE_DELAY_SECONDS"] == 0.25
    monkeypatch.delenv("DIVIDE_DELAY_SECONDS")
    assert create_app("testing").config["DIVIDE_DELAY_SECONDS"] == 0


def test_unknown_config_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="choose one of: development, production, testing"):
        create_app("staging")


def test_bad_number_in_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_TASK_TIME_LIMIT", "soon")
    with pytest.raises(ConfigError, match="CELERY_TASK_TIME_LIMIT must be a whole number"):
        load_config("testing")


def test_visibility_timeout_must_outlast_the_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_TASK_TIME_LIMIT", "100")
    monkeypatch.setenv("CELERY_VISIBILITY_TIMEOUT", "100")
    with pytest.raises(ConfigError, match="CELERY_VISIBILITY_TIMEOUT must be longer"):
        load_config("testing")


def test_lost_task_check_defaults_to_the_visibility_timeout_and_refuses_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CELERY_VISIBILITY_TIMEOUT", "300")
    assert load_config("testing").TASK_LOST_AFTER_SECONDS == 300.0
    monkeypatch.setenv("TASK_LOST_AFTER_SECONDS", "0")
    with pytest.raises(ConfigError, match="TASK_LOST_AFTER_SECONDS must be more than 0"):
        load_config("testing")


def test_celery_is_json_only_and_at_least_once() -> None:
    create_app("testing")
    conf = ext_celery.celery.conf
    assert conf.accept_content == ["json"]
    assert conf.result_accept_content == ["json"]
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    # A worker killed mid-scan must not hold up everyone's redelivery for kombu's 300 s.
    assert conf.broker_transport_options["unacked_mutex_expire"] <= 10
    assert 0 < conf.task_soft_time_limit < conf.task_time_limit
    assert conf.result_expires > 0
    assert conf.broker_connection_retry_on_startup is True
    assert conf.maybe_warn_deprecated_settings() is False


def test_production_is_not_debug(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("SECRET_KEY", "a" * 16 + "b" * 16 + "c" * 16)
    app = create_app("production")
    assert app.debug is False
    assert app.config["MAX_CONTENT_LENGTH"] == 64 * 1024


def test_secret_key_can_come_from_a_file(
    monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path
) -> None:
    key_file = tmp_path / "secret_key"
    key_file.write_text("f" * 64 + "\n")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("SECRET_KEY_FILE", str(key_file))
    assert create_app("production").config["SECRET_KEY"] == "f" * 64
    monkeypatch.setenv("SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="SECRET_KEY_FILE=.* cannot be read"):
        create_app("production")


@pytest.mark.parametrize(("hard", "soft"), [(60, 54), (10, 9), (5, 4), (2, 1)])
def test_soft_time_limit_defaults_just_under_the_hard_one(
    monkeypatch: pytest.MonkeyPatch, hard: int, soft: int
) -> None:
    monkeypatch.setenv("CELERY_TASK_TIME_LIMIT", str(hard))
    assert load_config("testing").CELERY_TASK_SOFT_TIME_LIMIT == soft


@pytest.mark.parametrize(
    ("name", "setting"),
    [
        ("DATABASE_URL", "SQLALCHEMY_DATABASE_URI"),
        ("CELERY_BROKER_URL", "CELERY_BROKER_URL"),
        ("CELERY_RESULT_BACKEND", "CELERY_RESULT_BACKEND"),
    ],
)
def test_connection_urls_can_come_from_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path, name: str, setting: str
) -> None:
    url_file = tmp_path / name.lower()
    url_file.write_text("redis://:s3cret@cache:6379/0\n")
    monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(f"{name}_FILE", str(url_file))
    assert getattr(load_config("testing"), setting) == "redis://:s3cret@cache:6379/0"
    monkeypatch.setenv(name, "redis://elsewhere:6379/1")  # the variable wins over the file
    assert getattr(load_config("testing"), setting) == "redis://elsewhere:6379/1"


def test_api_auth_is_required_in_production_and_off_elsewhere(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.delenv("API_AUTH", raising=False)
    monkeypatch.setenv("SECRET_KEY", "f" * 64)
    assert load_config("production").API_AUTH == "required"
    assert load_config("development").API_AUTH == "off"
    assert load_config("testing").API_AUTH == "off"
    monkeypatch.setenv("API_AUTH", "off")
    assert load_config("production").API_AUTH == "off"


def test_rate_limits_default_on_except_in_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RATE_LIMIT_WRITES", "RATE_LIMIT_READS"):
        monkeypatch.delenv(name, raising=False)
    development = load_config("development")
    assert (development.RATE_LIMIT_WRITES, development.RATE_LIMIT_READS) == (
        "60/minute",
        "600/minute",
    )
    assert load_config("testing").RATE_LIMIT_WRITES == ""
    monkeypatch.setenv("RATE_LIMIT_READS", "off")
    assert load_config("development").RATE_LIMIT_READS == ""


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("API_AUTH", "yes", "API_AUTH must be one of required, off; got 'yes'"),
        ("RATE_LIMIT_WRITES", "lots", "RATE_LIMIT_WRITES must be a rate such as '60/minute'"),
    ],
)
def test_bad_access_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_config("testing")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"TASK_PURGE_INTERVAL_SECONDS": "0"}, "TASK_PURGE_INTERVAL_SECONDS more than 0"),
        ({"TASK_RETENTION_DAYS": "-1"}, "TASK_RETENTION_DAYS must be 0 or more"),
        ({"TASK_RETENTION_DAYS": "a month"}, "TASK_RETENTION_DAYS must be a whole number"),
        ({"BEAT_LOCK_TIMEOUT_SECONDS": "5"}, "BEAT_LOCK_TIMEOUT_SECONDS must be longer"),
    ],
)
def test_bad_schedule_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], message: str
) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_config("testing")


def test_beat_schedule_and_worker_caps_are_on_by_default() -> None:
    create_app("testing")
    conf = ext_celery.celery.conf
    assert conf.beat_scheduler == "redbeat.RedBeatScheduler"
    purge = conf.beat_schedule["purge-tasks"]
    assert (purge["task"], purge["schedule"]) == ("project.tasks.tasks.purge_tasks", 3600.0)
    ext_celery.celery.loader.import_default_modules()  # as a worker does when it starts
    assert purge["task"] in ext_celery.celery.tasks
    assert conf.redbeat_lock_timeout > conf.beat_max_loop_interval
    assert conf.worker_max_memory_per_child == 256 * 1024
    assert conf.worker_max_tasks_per_child == 10000
    assert 0 < conf.worker_soft_shutdown_timeout
    assert conf.worker_direct is True
