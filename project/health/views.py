"""`/healthz` (the process serves) and `/readyz` (its dependencies answer)."""

from flask import Blueprint, Response, jsonify

from project.errors import problem_response
from project.health.checks import check_broker, check_database

health_blueprint = Blueprint("health", __name__)


@health_blueprint.get("/healthz")
def healthz() -> Response:
    """Answer 200 while the process serves requests."""
    return jsonify({"status": "ok"})


@health_blueprint.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    """Answer 200 when the database is migrated and the broker answers, else 503 naming why."""
    failures = {
        name: problem
        for name, problem in (("database", check_database()), ("broker", check_broker()))
        if problem is not None
    }
    if failures:
        return problem_response(
            503,
            "Service Unavailable",
            "Not ready: " + "; ".join(failures.values()) + ".",
            "not-ready",
            checks=failures,
        )
    return jsonify({"status": "ready", "checks": {"database": "ok", "broker": "ok"}})
