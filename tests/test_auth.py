"""API tokens: `flask tokens` as typed, and API_AUTH=required against gunicorn."""

import urllib.request

import psycopg2
import pytest

from harness.processes import BIN, run_cli
from tests.support import PROBLEM_JSON, ProtectedServer, create_token, http


def flask_tokens(env: dict[str, str], *args: str):
    """Run `flask tokens ARGS` from the repo root, as a user types it."""
    return run_cli([str(BIN / "flask"), "tokens", *args], env)


def raw_get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_token_commands_work_as_typed(app, migrated: dict[str, str]) -> None:
    token = create_token(migrated, "ci")
    assert token.startswith("fcs_")
    listed = flask_tokens(migrated, "list")
    assert listed.returncode == 0 and listed.stdout.split()[:2] == ["ci", "created"]
    assert "active" in listed.stdout and token not in listed.stdout
    revoked = flask_tokens(migrated, "revoke", "ci")
    assert revoked.returncode == 0 and revoked.stdout.strip() == "Token 'ci' revoked."
    assert "revoked" in flask_tokens(migrated, "list").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "taken"], "Error: a token named 'taken' exists already; choose another name"),
        (["create", "no spaces"], "Error: a token name must be 1 to 64 letters"),
        (["revoke", "nobody"], "Error: there is no active token named 'nobody'"),
    ],
)
def test_refused_token_commands_say_why_in_one_line(
    app, migrated: dict[str, str], args: list[str], message: str
) -> None:
    create_token(migrated, "taken")
    result = flask_tokens(migrated, *args)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_database_keeps_no_token_in_clear(app, migrated: dict[str, str]) -> None:
    token = create_token(migrated, "kept")
    connection = psycopg2.connect(migrated["DATABASE_URL"])
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM api_tokens")
            stored = " ".join(str(value) for row in cursor.fetchall() for value in row)
    finally:
        connection.close()
    secret = token.split(".", 1)[1]
    assert "kept" in stored
    assert token not in stored and secret not in stored


def test_api_requests_need_an_active_token(protected_server: ProtectedServer) -> None:
    base_url, env, _ = protected_server
    good, revoked = create_token(env, "good"), create_token(env, "gone")
    assert flask_tokens(env, "revoke", "gone").returncode == 0
    invalid = 'Bearer realm="api", error="invalid_token"'
    cases = {
        "no token": (None, 'Bearer realm="api"'),
        "wrong token": (f"Bearer {good[:-4]}AAAA", invalid),
        "not a token": ("Bearer '; DROP TABLE users; --", invalid),
        "another scheme": ("Basic Z29vZDpwYXNzd29yZA==", invalid),
        "revoked token": (f"Bearer {revoked}", invalid),
    }
    for case, (authorization, challenge) in cases.items():
        headers = {"Authorization": authorization} if authorization else {}
        status, response_headers, _ = raw_get(f"{base_url}/users/", headers)
        assert status == 401, case
        assert response_headers["Content-Type"] == PROBLEM_JSON, case
        assert response_headers["WWW-Authenticate"] == challenge, case
    status, content_type, body = http("POST", f"{base_url}/tasks/divide", {"x": 1, "y": 2})
    assert (status, content_type) == (401, PROBLEM_JSON)
    assert "flask tokens create NAME" in body["detail"]
    assert http("GET", f"{base_url}/users/", token=good)[0] == 200


def test_public_pages_stay_open(protected_server: ProtectedServer) -> None:
    base_url = protected_server.url
    for path in ("/healthz", "/readyz", "/", "/docs", "/openapi.json", "/static/app.js"):
        status, _, _ = raw_get(base_url + path, {})
        assert status == 200, path


def test_a_task_record_keeps_the_name_of_its_token(protected_server: ProtectedServer) -> None:
    base_url, env, _ = protected_server
    token = create_token(env, "reports-service")
    status, _, queued = http("POST", f"{base_url}/tasks/divide", {"x": 1, "y": 2}, token)
    assert status == 202
    status, _, task = http("GET", base_url + queued["url"], token=token)
    assert status == 200 and task["queued_by"] == "reports-service"


def test_idempotency_keys_belong_to_their_token(protected_server: ProtectedServer) -> None:
    base_url, env, _ = protected_server
    first, second = create_token(env, "first"), create_token(env, "second")

    def create(token: str, username: str) -> int:
        request = urllib.request.Request(
            f"{base_url}/users/",
            f'{{"username": "{username}", "email": "{username}@example.com"}}'.encode(),
            {
                "Content-Type": "application/json",
                "Idempotency-Key": "same-key",
                "Authorization": f"Bearer {token}",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    # Another token's key with another body is its own key, not a reuse (422).
    assert create(first, "ann") == 201
    assert create(second, "bob") == 201
