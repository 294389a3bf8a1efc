"""A client generated from the served /openapi.json drives the whole API.

openapi-python-client is the most used Python generator: if it drops a model or
mistypes a field, clients built from the document cannot read the API.
"""

import importlib
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

import pytest

from harness.processes import BIN, Process, run_cli

PACKAGE = "stack_client"


@pytest.fixture
def generated(server: str, tmp_path: Path) -> Iterator[ModuleType]:
    """Generate a client package from the served document and import it."""
    document = tmp_path / "openapi.json"
    with urllib.request.urlopen(f"{server}/openapi.json", timeout=10) as response:
        document.write_bytes(response.read())
    result = run_cli(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / PACKAGE),
        ],
        env={"PATH": str(BIN)},
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


@pytest.fixture
def client(generated: ModuleType, server: str) -> Iterator[object]:
    """The generated client pointed at gunicorn; it fails on a status the document omits."""
    with generated.Client(base_url=server, raise_on_unexpected_status=True) as client:
        yield client


def api(package: ModuleType, name: str) -> ModuleType:
    """Import one generated endpoint module, e.g. `users.post_users`."""
    return importlib.import_module(f"{package.__name__}.api.{name}")


def models(package: ModuleType) -> ModuleType:
    return importlib.import_module(f"{package.__name__}.models")


def test_generated_client_drives_users(generated: ModuleType, client: object) -> None:
    m = models(generated)
    create = api(generated, "users.post_users")

    created = [
        create.sync(client=client, body=m.UserIn(username=f"user{i}", email=f"u{i}@example.com"))
        for i in range(5)
    ]
    assert all(isinstance(user, m.UserOut) for user in created)
    ada = created[0]
    assert api(generated, "users.get_users_user_id").sync(ada.id, client=client) == ada

    changed = api(generated, "users.patch_users_user_id").sync(
        ada.id, client=client, body=m.UserPatch(username="lovelace")
    )
    assert (changed.username, changed.email) == ("lovelace", "u0@example.com")

    clash = create.sync_detailed(
        client=client, body=m.UserIn(username="lovelace", email="x@example.com")
    )
    assert clash.status_code == 409
    assert isinstance(clash.parsed, m.Problem)
    assert clash.parsed.errors.to_dict() == {"username": "is already taken"}

    listing = api(generated, "users.get_users")
    seen, page = [], listing.sync(client=client, limit=2)
    while True:
        seen += [user.id for user in page.items]
        if page.next_ is None:
            break
        query = parse_qs(urlsplit(page.next_).query)
        limit, after = int(query["limit"][0]), int(query["after"][0])
        page = listing.sync(client=client, limit=limit, after=after)
    assert seen == [user.id for user in created]

    delete = api(generated, "users.delete_users_user_id")
    assert delete.sync_detailed(ada.id, client=client).status_code == 204
    missing = api(generated, "users.get_users_user_id").sync(ada.id, client=client)
    assert isinstance(missing, m.Problem) and missing.status == 404


def test_generated_client_follows_a_task(
    generated: ModuleType, client: object, worker: Process
) -> None:
    m = models(generated)

    divide = api(generated, "tasks.post_tasks_divide")
    queued = divide.sync(client=client, body=m.DivideIn(x=1, y=2))
    assert isinstance(queued, m.QueuedTask) and queued.state == "PENDING"

    follow = api(generated, "tasks.get_tasks_task_id")
    task = follow.sync(queued.id, client=client, wait=10)
    assert isinstance(task, m.TaskOut)
    assert (task.state, task.result, task.args) == ("SUCCESS", 0.5, [1, 2])
    assert task.finished_at is not None and task.finished_at >= task.created_at

    tasks = api(generated, "tasks.get_tasks").sync(client=client)
    assert isinstance(tasks, m.TaskPage)
    assert [listed.id for listed in tasks.items] == [queued.id]
