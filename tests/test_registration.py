"""Tasks and models register themselves: no view has to import them first.

(The schema-drift check, `flask db check`, is in test_cli.py.)
"""

import ast
import json
from pathlib import Path

from harness.processes import BIN, REPO_ROOT, Process, run_cli

TASK_DECORATORS = {"shared_task", "task"}


def tasks_defined_under_project() -> set[str]:
    """Read every module under project/ for functions decorated as Celery tasks."""
    names = set()
    for path in (REPO_ROOT / "project").rglob("*.py"):
        module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:
                    call = decorator if isinstance(decorator, ast.Call) else None
                    target = call.func if call else decorator
                    name = getattr(target, "id", None) or getattr(target, "attr", None)
                    if name in TASK_DECORATORS:
                        explicit = [
                            k.value.value
                            for k in (call.keywords if call else [])
                            if k.arg == "name"
                        ]
                        names.add(explicit[0] if explicit else f"{module}.{node.name}")
    return names


def test_worker_registers_every_task_defined_under_project(
    migrated: dict[str, str], worker: Process
) -> None:
    defined = tasks_defined_under_project()
    assert "project.users.tasks.divide" in defined
    result = run_cli(
        [
            str(BIN / "celery"),
            "-A",
            "app.celery",
            "inspect",
            "registered",
            "-d",
            worker.node,
            "--json",
        ],
        migrated,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    registered = set(json.loads(result.stdout.strip().splitlines()[-1])[worker.node])
    assert {name for name in registered if not name.startswith("celery.")} == defined


def test_models_are_found_in_every_feature_package() -> None:
    from project.features import feature_packages, import_feature_modules

    assert {"project.users", "project.tasks"} <= set(feature_packages())
    modules = {module.__name__ for module in import_feature_modules("models")}
    expected = {
        ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        for path in Path(REPO_ROOT / "project").glob("*/models.py")
    }
    assert modules == expected
