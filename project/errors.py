"""RFC 9457 problem details for every error the API returns."""

import logging
from typing import Any

from apiflask import APIFlask, HTTPError
from flask import Response, jsonify, request
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

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        slug: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.headers = headers or {}
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
        "The request has invalid fields: " + ", ".join(sorted(errors)) + ".",
        "validation-error",
        errors=errors,
    )


# Pydantic's wording of the common cases, in the words the rest of the API uses.
FRIENDLIER = {
    "Field required": "is required",
    "Extra inputs are not permitted": "is not a known field",
}


def field_errors(detail: dict[str, dict[str, list[str]]]) -> dict[str, str]:
    """Flatten APIFlask's `{location: {field.path: [messages]}}` into `{field: message}`."""
    errors: dict[str, str] = {}
    for fields in detail.values():
        for path, messages in fields.items():
            # "_schema" is the input as a whole (no field given, or not an object).
            field = "body" if path == "_schema" else path.split(".", 1)[0]
            message = messages[0].removeprefix("Value error, ")
            errors.setdefault(field, FRIENDLIER.get(message, message))
    return errors


def handle_http_error(error: HTTPError) -> tuple[Response, int]:
    """Answer APIFlask's errors (a schema refused the input) as problems."""
    if error.status_code == 422 and isinstance(error.detail, dict):
        return handle_problem(validation_problem(field_errors(error.detail)))
    title = error.message or "Error"
    return problem_response(error.status_code, title, title, _slug(title))


def _slug(title: str) -> str:
    return title.lower().replace(" ", "-").replace("'", "")


def handle_problem(error: Problem) -> tuple[Response, int]:
    """Answer a raised Problem, with its headers (Retry-After, ...)."""
    response, status = problem_response(
        error.status, error.title, error.detail, error.slug, **error.extra
    )
    response.headers.update(error.headers)
    return response, status


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


def init_error_handlers(app: APIFlask) -> None:
    """Register the problem+json handlers on the app."""
    app.register_error_handler(Problem, handle_problem)
    app.error_processor(handle_http_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(OperationalError, handle_database_unavailable)
    app.register_error_handler(BrokerError, handle_broker_unavailable)
    app.register_error_handler(RedisConnectionError, handle_broker_unavailable)
    app.register_error_handler(RedisTimeoutError, handle_broker_unavailable)
    app.register_error_handler(Exception, handle_unexpected)
