"""compose.yml and deploy/swarm/stack.yml run the same app the same way.

Docker's stack loader refuses compose.yml (its `depends_on` conditions and profiles), so the
Swarm file restates the app's services; this test keeps the two from drifting apart.
"""

from pathlib import Path

import pytest
import yaml

from harness.processes import REPO_ROOT

APP_SERVICES = ("migrate", "web", "worker", "beat")
# Where secrets are mounted differs: a volume under Compose, Swarm secrets under Swarm.
SECRET_FILES = {
    "DATABASE_URL_FILE", "CELERY_BROKER_URL_FILE", "CELERY_RESULT_BACKEND_FILE",
    "SECRET_KEY_FILE",
}  # fmt: skip
# Under Swarm the proxies are on the stack's own network, so web trusts that subnet.
SWARM_ONLY_VALUES = {"TRUSTED_PROXIES"}


def services(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["services"]


COMPOSE = services(REPO_ROOT / "compose.yml")
SWARM = services(REPO_ROOT / "deploy/swarm/stack.yml")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_match(name: str) -> None:
    compose, swarm = COMPOSE[name], SWARM[name]
    assert swarm["image"] == compose["image"]
    assert swarm["command"] == compose["command"]
    assert swarm.get("healthcheck") == compose.get("healthcheck")
    assert swarm.get("stop_grace_period") == compose.get("stop_grace_period")
    assert (swarm["read_only"], swarm["cap_drop"]) == (compose["read_only"], compose["cap_drop"])
    compose_env, swarm_env = compose["environment"], swarm["environment"]
    assert swarm_env.keys() == compose_env.keys()
    for key in SECRET_FILES:
        assert swarm_env[key] == "/run/secrets/" + Path(compose_env[key]).name
    shared = compose_env.keys() - SECRET_FILES - SWARM_ONLY_VALUES
    assert {k: swarm_env[k] for k in shared} == {k: compose_env[k] for k in shared}


@pytest.mark.parametrize("name", ("db", "redis"))
def test_data_services_use_the_same_images_and_volumes(name: str) -> None:
    compose, swarm = COMPOSE[name], SWARM[name]
    assert swarm["image"] == compose["image"]
    assert swarm["volumes"][0] == compose["volumes"][0]
    assert swarm["healthcheck"]["interval"] == compose["healthcheck"]["interval"]
