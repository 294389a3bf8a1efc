"""Liveness and readiness, including a database that is not migrated yet."""

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask
from flask.testing import FlaskClient

from harness.processes import BIN, REPO_ROOT, free_port, run_cli, start_gunicorn
from tests.support import Databases, assert_problem, run_check


def test_healthz_answers_200(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_answers_200_when_migrated_and_broker_up(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_names_flask_db_upgrade_until_it_runs(
    app_with: Callable[..., Flask], migrated: dict[str, str], databases: Databases
) -> None:
    url = databases.create()
    client = app_with(DATABASE_URL=url).test_client()
    body = assert_problem(client.get("/readyz"), 503)
    assert set(body["checks"]) == {"database"}
    assert "flask db upgrade" in body["checks"]["database"]

    result = run_cli([str(BIN / "flask"), "db", "upgrade"], {**migrated, "DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert client.get("/readyz").status_code == 200


def test_readyz_names_each_unreachable_dependency(app_with: Callable[..., Flask]) -> None:
    app = app_with(
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/none",
        CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    body = assert_problem(app.test_client().get("/readyz"), 503)
    assert set(body["checks"]) == {"database", "broker"}
    assert "DATABASE_URL" in body["checks"]["database"]
    assert "CELERY_BROKER_URL" in body["checks"]["broker"]


def test_the_web_healthcheck_script_passes_only_on_readyz_200(
    migrated: dict[str, str], databases: Databases, log_dir: Path
) -> None:
    # What Compose and Swarm run in the web container every second.
    def healthcheck(url: str) -> tuple[int, str]:
        env = {**migrated, "WEB_INTERNAL_PORT": str(urlsplit(url).port)}
        return run_check([str(REPO_ROOT / "scripts" / "web-healthcheck")], env)

    ready, ready_url = start_gunicorn(migrated, log_dir)
    not_migrated, not_migrated_url = start_gunicorn(
        {**migrated, "DATABASE_URL": databases.create()}, log_dir
    )
    try:
        assert healthcheck(ready_url) == (0, "")
        assert healthcheck(not_migrated_url) == (1, "/readyz answered 503")
    finally:
        ready.stop()
        not_migrated.stop()
    code, output = healthcheck(ready_url)  # nothing listens there any more
    assert code == 1 and "Connection refused" in output, output
