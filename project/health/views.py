"""`/healthz` (the process serves) and `/readyz` (its dependencies answer)."""

from apiflask import APIBlueprint
from pydantic import BaseModel

from project.errors import Problem
from project.health.checks import check_broker, check_database

health_blueprint = APIBlueprint("health", __name__, tag="Health")


class Alive(BaseModel):
    """The process serves requests."""

    status: str


class Ready(BaseModel):
    """Every dependency answers."""

    status: str
    checks: dict[str, str]


@health_blueprint.get("/healthz")
@health_blueprint.output(Alive)
def healthz() -> dict[str, str]:
    """Answer 200 while the process serves requests."""
    return {"status": "ok"}


@health_blueprint.get("/readyz")
@health_blueprint.output(Ready)
@health_blueprint.doc(responses={503: "Not ready: `checks` names each failing check."})
def readyz() -> dict:
    """Answer 200 when the database is migrated and the broker answers, else 503 naming why."""
    failures = {
        name: problem
        for name, problem in (("database", check_database()), ("broker", check_broker()))
        if problem is not None
    }
    if failures:
        raise Problem(
            503,
            "Service Unavailable",
            "Not ready: " + "; ".join(failures.values()) + ".",
            "not-ready",
            checks=failures,
        )
    return {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}
