"""Every setting is documented once: docs/configuration.md and .env.example list exactly the
environment variables the code reads.

"The code" is the app (project/, app.py, gunicorn.conf.py), the scripts (scripts/, .ci/),
the Compose and Swarm files (their `${NAME}` settings), and the tests' own settings (tests/,
harness/, bench/). A variable counts as read when Python passes its name to `os.environ`,
`os.getenv` or one of project/config.py's `env_*` readers (`env_or_file` also reads NAME_FILE),
or a shell script or Compose file expands `${NAME}` / `$NAME`.
"""

import ast
import re
from pathlib import Path

from harness.processes import REPO_ROOT

PYTHON_SOURCES = ("project", "app.py", "gunicorn.conf.py", "harness", "tests", "bench")
SHELL_SOURCES = ("scripts", ".ci")
COMPOSE_FILES = ("compose.yml", "compose.dev.yml", "deploy/swarm/stack.yml")
# Read by scripts but not settings: the shell's own, and values one script hands another.
NOT_SETTINGS = {
    "BASH_SOURCE", "BASH_REMATCH", "HOME", "HOSTNAME", "PATH", "SECONDS", "TMPDIR",
    "REPO_ROOT", "FAST_TIERS", "HAPROXY_CFG_HASH",
}  # fmt: skip
READERS = {"env_number", "env_networks", "env_choice", "env_rate_limit", "env_or_file", "getenv"}
NAME = re.compile(r"[A-Z][A-Z0-9_]+")


def python_files() -> list[Path]:
    files = []
    for source in PYTHON_SOURCES:
        path = REPO_ROOT / source
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def read_in_python(path: Path) -> set[str]:
    """Names passed to os.environ.get / os.environ[...] / os.getenv / the env_* readers."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        argument = None
        if isinstance(node, ast.Call) and node.args:
            function = node.func
            called = getattr(function, "attr", None) or getattr(function, "id", None)
            environ_get = (
                called == "get"
                and isinstance(function, ast.Attribute)
                and getattr(function.value, "attr", None) == "environ"
            )
            if called in READERS or environ_get:
                argument = node.args[0]
                if called == "env_or_file" and isinstance(argument, ast.Constant):
                    names.add(f"{argument.value}_FILE")
        elif isinstance(node, ast.Subscript) and getattr(node.value, "attr", None) == "environ":
            argument = node.slice
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            names.add(argument.value)
    return {name for name in names if NAME.fullmatch(name)}


def read_in_shell(text: str) -> set[str]:
    """Names a shell script or Compose file expands (${NAME...}, $NAME), or its Python reads."""
    expanded = re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", text)
    return {*expanded, *re.findall(r"environ(?:\.get\(|\[)\"([A-Z][A-Z0-9_]+)\"", text)}


def settings_read() -> set[str]:
    names = set().union(*(read_in_python(path) for path in python_files()))
    for source in SHELL_SOURCES:
        for path in (REPO_ROOT / source).rglob("*"):
            # The stand-in base images keep their official images' settings (PGDATA...).
            if path.is_file() and "offline-images" not in path.parts:
                names |= read_in_shell(path.read_text())
    for compose in COMPOSE_FILES:
        # $$NAME is expanded by the container's shell, not by Compose: not a setting.
        names |= read_in_shell((REPO_ROOT / compose).read_text().replace("$$", ""))
    return names - NOT_SETTINGS


def documented_in_env_example() -> set[str]:
    text = (REPO_ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))


def documented_in_configuration_page() -> set[str]:
    text = (REPO_ROOT / "docs/configuration.md").read_text()
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", text, re.MULTILINE))


def test_the_scan_finds_settings_of_every_kind() -> None:
    read = settings_read()
    # One of each way of reading: env_number, env_or_file (+ _FILE), os.environ.get, a
    # script's ${...}, compose.yml, the Swarm file, the test harness.
    assert {
        "CELERY_TASK_TIME_LIMIT", "DATABASE_URL", "DATABASE_URL_FILE", "FLASK_CONFIG",
        "SECRETS_DIR", "WEB_BIND", "WEB_REPLICAS", "TEST_DATABASE_URL",
    } <= read  # fmt: skip


def test_env_example_lists_exactly_the_settings_read() -> None:
    read, listed = settings_read(), documented_in_env_example()
    assert sorted(read - listed) == [], "read by the code but missing from .env.example"
    assert sorted(listed - read) == [], "in .env.example but read by no code"


def test_configuration_page_lists_exactly_the_settings_read() -> None:
    read, listed = settings_read(), documented_in_configuration_page()
    assert sorted(read - listed) == [], "read by the code but missing from docs/configuration.md"
    assert sorted(listed - read) == [], "in docs/configuration.md but read by no code"
