"""RFC 9457 problem details for every error the API returns."""

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

PROBLEM_MIME = "application/problem+json"
PROBLEM_TYPE_BASE = "/problems/"

log = logging.getLogger(__name__)


class Problem(Exception):
    """An error to answer as problem+json; `extra` members are added to the body."""

    def __init__(self, status: int, title: str, detail: str, slug: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.extra = extra


def problem_response(
    status: int, title: str, detail: str, slug: str, **extra: Any
) -> tuple[Response, int]:
    """Build a problem+json response."""
    body = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path,
        **extra,
    }
    response = jsonify(body)
    response.mimetype = PROBLEM_MIME
    return response, status


def validation_problem(errors: dict[str, str]) -> Problem:
    """A 422 naming each invalid field."""
    return Problem(
        422,
        "Unprocessable Content",
        "The request body has invalid fields: " + ", ".join(sorted(errors)) + ".",
        "validation-error",
        errors=errors,
    )


def _slug(title: str) -> str:
    return title.lower().replace(" ", "-").replace("'", "")


def handle_problem(error: Problem) -> tuple[Response, int]:
    """Answer a raised Problem."""
    return problem_response(error.status, error.title, error.detail, error.slug, **error.extra)


def handle_http_exception(error: HTTPException) -> tuple[Response, int]:
    """Answer Werkzeug's HTTP errors (404, 405, 413, ...) as problems."""
    status = error.code or 500
    title = error.name
    response, _ = problem_response(status, title, error.description or title, _slug(title))
    for name, value in error.get_headers():
        if name == "Allow":  # 405 must say which methods are allowed
            response.headers[name] = value
    return response, status


def handle_database_unavailable(error: DBAPIError) -> tuple[Response, int]:
    """Answer 503 when the database cannot be reached."""
    log.warning("database unavailable: %s", str(error.orig).strip())
    return problem_response(
        503,
        "Service Unavailable",
        "The database is unavailable; try again shortly.",
        "database-unavailable",
    )


def handle_broker_unavailable(error: Exception) -> tuple[Response, int]:
    """Answer 503 when the message broker or result backend cannot be reached."""
    log.warning("broker unavailable: %s", error)
    return problem_response(
        503,
        "Service Unavailable",
        "The task queue is unavailable; try again shortly.",
        "broker-unavailable",
    )


def handle_unexpected(error: Exception) -> tuple[Response, int]:
    """Answer 500 without leaking a traceback, and log it for the operator."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    return problem_response(
        500,
        "Internal Server Error",
        "An unexpected error occurred; it has been logged.",
        "internal-error",
    )


def init_error_handlers(app: Flask) -> None:
    """Register the problem+json handlers on the app."""
    app.register_error_handler(Problem, handle_problem)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(OperationalError, handle_database_unavailable)
    app.register_error_handler(BrokerError, handle_broker_unavailable)
    app.register_error_handler(RedisConnectionError, handle_broker_unavailable)
    app.register_error_handler(RedisTimeoutError, handle_broker_unavailable)
    app.register_error_handler(Exception, handle_unexpected)
