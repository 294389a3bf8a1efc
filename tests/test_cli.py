"""The commands users type from the repo root: flask db, flask shell, and bad configs."""

from pathlib import Path

import pytest
from flask import Flask

from harness.processes import BIN, run_cli
from tests.support import Databases

TUTORIAL_SHELL = """\
from project.users.models import User
user = User(username='test1', email='test1@example.com')
db.session.add(user)
db.session.commit()
print('USERS', User.query.all())
"""


def flask(*args: str) -> list[str]:
    return [str(BIN / "flask"), *args]


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_flask_db_upgrade_twice_is_harmless(
    database: str, migrated: dict[str, str], databases: Databases, tmp_path: Path
) -> None:
    url = databases.create() if database == "postgresql" else f"sqlite:///{tmp_path}/app.db"
    env = {**migrated, "DATABASE_URL": url}
    first = run_cli(flask("db", "upgrade"), env)
    assert first.returncode == 0, first.stderr
    assert "Running upgrade" in first.stderr
    second = run_cli(flask("db", "upgrade"), env)
    assert second.returncode == 0, second.stderr
    assert "Running upgrade" not in second.stderr


def test_flask_db_check_finds_no_drift(migrated: dict[str, str]) -> None:
    result = run_cli(flask("db", "check"), migrated)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr


def test_tutorial_shell_session_adds_and_lists_a_user(app: Flask, migrated: dict[str, str]) -> None:
    result = run_cli(flask("shell"), migrated, stdin=TUTORIAL_SHELL)
    assert "Traceback" not in result.stderr, result.stderr
    assert "USERS [<User 1 'test1'>]" in result.stdout + result.stderr


def test_unknown_flask_config_names_the_choices(migrated: dict[str, str]) -> None:
    result = run_cli(flask("routes"), {**migrated, "FLASK_CONFIG": "staging"})
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "configuration error: FLASK_CONFIG='staging' is not a known config; "
        "choose one of: development, production, testing"
    )


GOOD_SECRET = "9f2c4e7a1b3d5f6081a2c3e4f5061728394a5b6c7d8e9f00"
COMMANDS = {
    "flask": ["flask", "routes"],
    "gunicorn": ["gunicorn", "app:app"],
    "celery": ["celery", "-A", "app.celery", "worker", "--loglevel=info"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("secret", "database_url", "message"),
    [
        (None, "postgresql://db/app", "SECRET_KEY (or SECRET_KEY_FILE) must be set in production"),
        ("short", "postgresql://db/app", "SECRET_KEY must be a random value of at least 32"),
        ("dev", "postgresql://db/app", "SECRET_KEY must be a random value of at least 32"),
        (GOOD_SECRET, None, "DATABASE_URL (or DATABASE_URL_FILE) must be set in production"),
    ],
)
def test_production_refuses_to_start_with_one_line(
    migrated: dict[str, str],
    command: str,
    secret: str | None,
    database_url: str | None,
    message: str,
) -> None:
    env = {**migrated, "FLASK_CONFIG": "production"}
    env.pop("SECRET_KEY", None)
    env.pop("DATABASE_URL", None)
    if secret is not None:
        env["SECRET_KEY"] = secret
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    args = COMMANDS[command]
    result = run_cli([str(BIN / args[0]), *args[1:]], env, timeout=30)
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("configuration error: " + message)
