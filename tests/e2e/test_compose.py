"""The Compose stack end to end, driven as a user drives it: up, exec, curl, logs, down."""

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.processes import REPO_ROOT, wait_for
from tests.e2e.stack import Stack, docker_engine_answers
from tests.support import account, bearer, report, skip_or_fail, submit_divisions


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    if not docker_engine_answers():
        skip_or_fail("no Docker engine answers: install and start one (.ci/setup-machine does)")
    stack = Stack()
    started = time.monotonic()
    try:
        stack.compose("up", "-d", "--build", "--wait", timeout=900)
        healthy_after = time.monotonic() - started
        image_bytes = int(
            subprocess.run(
                ["docker", "image", "inspect", "-f", "{{.Size}}", stack.env["APP_IMAGE"]],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        report(
            request,
            f"compose: up --build --wait to all healthy in {healthy_after:.1f}s; "
            f"app image {image_bytes / 1e6:.0f} MB",
        )
        # The README's quick start: the API needs a token in production config.
        stack.token = stack.compose(
            "exec", "web", "flask", "tokens", "create", "e2e"
        ).stdout.strip()
        yield stack
    except AssertionError:
        print(stack.compose("logs", "--no-color", check=False).stdout[-5000:])
        raise
    finally:
        stack.compose("--profile", "monitoring", "down", "-v", "--remove-orphans", check=False)


def test_exec_flask_db_upgrade_is_harmless_at_head(stack: Stack) -> None:
    result = stack.compose("exec", "web", "flask", "db", "upgrade")
    assert "Running upgrade" not in result.stderr


def test_the_api_needs_the_token_exec_made(stack: Stack) -> None:
    assert stack.token.startswith("fcs_")
    status, problem = stack.request("GET", "/users/", authenticated=False)
    assert status == 401 and "flask tokens create NAME" in problem["detail"]
    assert stack.request("GET", "/users/")[0] == 200
    listed = stack.compose("exec", "web", "flask", "tokens", "list").stdout
    assert listed.startswith("e2e ") and stack.token not in listed
    assert stack.request("GET", "/readyz", authenticated=False)[0] == 200


def test_users_and_tasks_over_the_published_port(stack: Stack) -> None:
    status, user = stack.request("POST", "/users/", {"username": "e2e", "email": "e2e@example.com"})
    assert status == 201
    status, page = stack.request("GET", "/users/")
    # The worker may have welcomed the user meanwhile: the rest is as created.
    assert status == 200 and [{**item, "welcomed_at": None} for item in page["items"]] == [user]
    welcomed = wait_for(
        lambda: stack.request("GET", f"/users/{user['id']}")[1]["welcomed_at"], 60, "welcome"
    )
    assert welcomed.endswith("Z")

    _, ok = stack.request("POST", "/tasks/divide", {"x": 1, "y": 2})
    _, bad = stack.request("POST", "/tasks/divide", {"x": 1, "y": 0})
    done = stack.finished_task(ok["url"])
    assert (done["state"], done["result"]) == ("SUCCESS", 0.5)
    failed = stack.finished_task(bad["url"])
    assert failed["state"] == "FAILURE"
    assert failed["error"]["type"] == "ZeroDivisionError"

    logs = stack.compose("logs", "worker", "--no-color").stdout
    task = f"project.users.tasks.divide[{ok['id']}]"
    assert f"Task {task} received" in logs
    assert f"Task {task} succeeded in" in logs and ": 0.5" in logs


def test_metrics_over_the_published_port_need_the_token(stack: Stack) -> None:
    assert stack.request("GET", "/metrics", authenticated=False)[0] == 401
    request = urllib.request.Request(stack.base_url + "/metrics", headers=bearer(stack.token))
    with urllib.request.urlopen(request, timeout=10) as response:
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    assert families["celery_workers"].samples[0].value == 1
    assert "flask_http_request_duration_seconds" in families


def test_containers_run_as_non_root_and_share_a_generated_secret(stack: Stack) -> None:
    assert stack.compose("exec", "web", "id", "-u").stdout.strip() != "0"
    assert stack.compose("exec", "worker", "id", "-u").stdout.strip() != "0"
    key_file = "/var/lib/app-secrets/secret_key"
    web_key = stack.compose("exec", "web", "cat", key_file).stdout.strip()
    worker_key = stack.compose("exec", "worker", "cat", key_file).stdout.strip()
    assert len(web_key) == 64 and web_key == worker_key


def test_app_containers_are_read_only_without_capabilities(stack: Stack) -> None:
    for service in ("web", "worker", "beat", "migrate"):
        (container,) = stack.compose("ps", "--all", "-q", service).stdout.split()
        inspected = subprocess.run(
            ["docker", "inspect", "--format", "{{json .HostConfig}}", container],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        host = json.loads(inspected.stdout)
        assert host["ReadonlyRootfs"] is True, service
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
    refused = stack.compose("exec", "web", "touch", "/app/written", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert stack.compose("exec", "web", "touch", "/tmp/written", check=False).returncode == 0


def test_redis_and_postgres_need_generated_credentials(stack: Stack) -> None:
    unauthenticated = stack.compose("exec", "redis", "redis-cli", "ping", check=False)
    assert "NOAUTH" in unauthenticated.stdout + unauthenticated.stderr
    password = stack.compose("exec", "web", "cat", "/var/lib/app-secrets/postgres_password")
    assert len(password.stdout.strip()) == 64
    environment = stack.compose("exec", "db", "env").stdout
    assert "POSTGRES_PASSWORD=" not in environment


def test_generated_secrets_appear_in_no_config_or_log(stack: Stack) -> None:
    secrets = {
        name: stack.compose("exec", "web", "cat", f"/var/lib/app-secrets/{name}").stdout.strip()
        for name in ("secret_key", "postgres_password", "redis_password")
    }
    assert all(len(value) >= 32 for value in secrets.values()), secrets.keys()
    stack.request("GET", "/users/")  # something in the logs besides start-up
    shown = {
        "docker compose config": stack.compose("config").stdout,
        "docker compose logs": stack.compose("logs", "--no-color").stdout,
    }
    for where, text in shown.items():
        for name, value in secrets.items():
            assert value not in text, f"{name} appears in {where}"
        assert stack.token not in text, f"the API token appears in {where}"


def test_only_the_web_port_is_published(stack: Stack) -> None:
    listing = stack.compose("ps", "--format", "json").stdout
    containers = [json.loads(line) for line in listing.splitlines() if line.strip()]
    published = {
        (container["Service"], port["PublishedPort"], port["URL"])
        for container in containers
        for port in container.get("Publishers") or []
        if port.get("PublishedPort")
    }
    assert {service for service, _, _ in published} == {"web"}
    assert {port for _, port, _ in published} == {stack.port}
    addresses = {address for _, _, address in published}
    assert addresses == {"127.0.0.1"}  # loopback by default: not reachable from the network
    assert stack.compose("port", "db", "5432", check=False).stdout.strip() in ("", ":0")
    assert stack.compose("port", "redis", "6379", check=False).stdout.strip() in ("", ":0")


@pytest.mark.parametrize(
    ("bind", "expected"),
    [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0"), ("192.0.2.10", "192.0.2.10")],
)
def test_web_and_flower_bind_to_loopback_unless_told(bind: str | None, expected: str) -> None:
    config = Stack()
    for name in ("WEB_BIND", "FLOWER_BIND"):
        if bind is not None:
            config.env[name] = bind
    rendered = json.loads(
        config.compose("--profile", "monitoring", "config", "--format", "json").stdout
    )
    for service in ("web", "flower"):
        (port,) = rendered["services"][service]["ports"]
        assert port["host_ip"] == expected, service


def test_data_survives_a_web_restart(stack: Stack) -> None:
    status, user = stack.request(
        "POST", "/users/", {"username": "durable", "email": "durable@example.com"}
    )
    assert status == 201
    stack.compose("restart", "web")
    stack.compose("up", "-d", "--wait", "web")
    status, after = stack.request("GET", f"/users/{user['id']}")
    # The worker may have welcomed the user meanwhile: the rest is as created.
    assert (status, {**after, "welcomed_at": None}) == (200, user)


class ServiceLogs:
    """A Compose service's logs, read the way the fault accounting reads a worker's."""

    def __init__(self, stack: Stack, service: str) -> None:
        self.stack = stack
        self.service = service

    def output(self) -> str:
        return self.stack.compose("logs", "--no-color", self.service).stdout


def assert_nothing_lost(
    request: pytest.FixtureRequest, stack: Stack, name: str, expected: dict, since: float
) -> None:
    """Account for every task (as tests/faults does), print its figures, insist none is lost."""
    workers = [ServiceLogs(stack, "worker")]
    tally = account(stack.base_url, expected, workers, since, timeout=120, token=stack.token)
    report(request, tally.line(name))
    assert tally.lost == 0, tally.lost_ids
    assert tally.succeeded == len(expected) and tally.failed == tally.wrong == 0


def test_sigkilled_worker_container_loses_no_task(
    request: pytest.FixtureRequest, stack: Stack
) -> None:
    expected = submit_divisions(stack.base_url, 20, stack.token)
    worker_log = ServiceLogs(stack, "worker")
    wait_for(lambda: "succeeded in" in worker_log.output(), 60, "work to start")
    killed_at = time.monotonic()
    stack.compose("kill", "-s", "SIGKILL", "worker")
    stack.compose("up", "-d", "--wait", "worker")
    assert_nothing_lost(request, stack, "compose worker SIGKILL", expected, killed_at)


def test_redis_restart_keeps_the_queued_backlog(
    request: pytest.FixtureRequest, stack: Stack
) -> None:
    stack.compose("stop", "worker")
    expected = submit_divisions(stack.base_url, 20, stack.token)
    restarted_at = time.monotonic()
    stack.compose("restart", "redis")
    wait_for(lambda: stack.request("GET", "/readyz")[0] == 200, 60, "web to be ready again")
    stack.compose("up", "-d", "--wait", "worker")
    assert_nothing_lost(request, stack, "compose redis restart", expected, restarted_at)


def test_flower_requires_basic_auth(stack: Stack) -> None:
    stack.compose("--profile", "monitoring", "up", "-d", "flower")
    url = f"http://127.0.0.1:{stack.env['FLOWER_PORT']}/"

    def status(auth: bool) -> int:
        request = urllib.request.Request(url)
        if auth:
            token = base64.b64encode(stack.env["FLOWER_BASIC_AUTH"].encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    wait_for(lambda: status(auth=False) == 401, 60, "Flower to answer")
    assert status(auth=True) == 200


def every_item(stack: Stack, path: str) -> list[dict]:
    """Every item of a paginated listing, following `next`."""
    items, url = [], path
    while url:
        status, page = stack.request("GET", url)
        assert status == 200, page
        items += page["items"]
        url = page["next"] and page["next"].removeprefix(stack.base_url)
    return items


def test_backup_restores_every_user_and_finished_task(
    request: pytest.FixtureRequest, stack: Stack, tmp_path: Path
) -> None:
    """Last in this module: it replaces the stack with a fresh one restored from a backup."""
    stack.request("POST", "/users/", {"username": "backed-up", "email": "b@example.com"})
    _, failing = stack.request("POST", "/tasks/divide", {"x": 1, "y": 0})
    stack.finished_task(failing["url"])

    def settled() -> list[dict] | None:
        tasks = every_item(stack, "/tasks/?limit=100")
        return tasks if all(t["state"] in ("SUCCESS", "FAILURE") for t in tasks) else None

    tasks = wait_for(settled, 120, "every task to finish", interval=1)
    users = every_item(stack, "/users/?limit=100")
    assert len(users) >= 2 and {t["state"] for t in tasks} == {"SUCCESS", "FAILURE"}

    def script(*args: str) -> None:
        result = subprocess.run(
            args, cwd=REPO_ROOT, env=stack.env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stdout + result.stderr

    script("scripts/backup", str(tmp_path))
    stack.compose("--profile", "monitoring", "down", "-v")
    stack.compose("up", "-d", "--wait", timeout=600)
    assert stack.request("GET", "/users/")[0] == 401  # a fresh stack: the token is unknown
    script("scripts/restore", str(tmp_path))

    restored_users = every_item(stack, "/users/?limit=100")
    restored_tasks = every_item(stack, "/tasks/?limit=100")
    report(
        request,
        f"backup: users={len(users)} tasks={len(tasks)} "
        f"restored_users={len(restored_users)} restored_tasks={len(restored_tasks)}",
    )
    assert restored_users == users
    assert restored_tasks == tasks
    assert stack.request("GET", f"/tasks/{failing['id']}")[1]["error"]["type"] == (
        "ZeroDivisionError"
    )
