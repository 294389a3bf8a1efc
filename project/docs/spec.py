"""The OpenAPI 3.1 document of the JSON API (tests check it against the running code)."""

from typing import Any

PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": PROBLEM}},
    }


def _json(description: str, schema_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}
        },
        **extra,
    }


LOCATION = {"Location": {"description": "URL of the resource", "schema": {"type": "string"}}}

# Responses every endpoint that reads a body, or touches a service, may give.
BODY_ERRORS = {
    "400": _problem("The body is not valid JSON."),
    "413": _problem("The body is larger than MAX_CONTENT_LENGTH."),
    "415": _problem("The body is not JSON (Content-Type must be application/json)."),
    "422": _problem("The body is valid JSON but a field is invalid; `errors` names each."),
}
UNAVAILABLE = {"503": _problem("The database or the task queue is unavailable.")}
NOT_FOUND = {"404": _problem("No such resource.")}
CONFLICT = {"409": _problem("The username or email is taken; `errors` names the field.")}
BAD_QUERY = {"422": _problem("A query parameter is invalid; `errors` names it.")}

USER_ID = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
LIMIT = {
    "name": "limit",
    "in": "query",
    "description": "Page size.",
    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
}


def _body(schema_name: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}
        },
    }


NAME = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"\S"}
EMAIL = {"type": "string", "maxLength": 128, "pattern": r"^\s*[^@\s]+@[^@\s]+\.[^@\s.]+\s*$"}
NUMBER = {"type": "number", "description": "A finite JSON number (integers under 300 digits)."}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "errors": {
                "type": "object",
                "description": "Field name → what is wrong with it.",
                "additionalProperties": {"type": "string"},
            },
            "checks": {
                "type": "object",
                "description": "Failing readiness check → what is wrong and what to do.",
                "additionalProperties": {"type": "string"},
            },
        },
    },
    "User": {
        "type": "object",
        "required": ["id", "username", "email"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer"},
            "username": {"type": "string"},
            "email": {"type": "string"},
        },
    },
    "UserCreate": {
        "type": "object",
        "required": ["username", "email"],
        "properties": {
            "username": {**NAME, "description": "1-128 characters after trimming."},
            "email": {**EMAIL, "description": "Stored lower-cased; unique."},
        },
    },
    "UserUpdate": {
        "type": "object",
        "minProperties": 1,
        "properties": {"username": NAME, "email": EMAIL},
    },
    "UserPage": {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
            "next": {"type": ["string", "null"], "description": "URL of the next page."},
        },
    },
    "DivideRequest": {
        "type": "object",
        "required": ["x", "y"],
        "properties": {"x": NUMBER, "y": NUMBER},
    },
    "TaskQueued": {
        "type": "object",
        "required": ["id", "name", "state", "url"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "state": {"const": "PENDING"},
            "url": {"type": "string"},
        },
    },
    "Task": {
        "type": "object",
        "required": ["id", "name", "state", "url", "created_at", "args"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "state": {"enum": ["PENDING", "STARTED", "SUCCESS", "FAILURE", "RETRY", "REVOKED"]},
            "url": {"type": "string"},
            "args": {"type": "array", "description": "The task's positional arguments."},
            "created_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": "string", "format": "date-time"},
            "result": {"description": "The return value, on SUCCESS (x / y for divide)."},
            "error": {
                "type": "object",
                "description": "On FAILURE (or RETRY): the exception, never a traceback.",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "TaskPage": {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
            "next": {"type": ["string", "null"]},
        },
    },
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string"},
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
}

PATHS: dict[str, Any] = {
    "/users/": {
        "post": {
            "summary": "Create a user",
            "operationId": "createUser",
            "tags": ["users"],
            "requestBody": _body("UserCreate"),
            "responses": {
                "201": _json("Created.", "User", headers=LOCATION),
                **BODY_ERRORS,
                **CONFLICT,
                **UNAVAILABLE,
            },
        },
        "get": {
            "summary": "List users by id (keyset pagination)",
            "operationId": "listUsers",
            "tags": ["users"],
            "parameters": [
                LIMIT,
                {
                    "name": "after",
                    "in": "query",
                    "description": "List users whose id is greater than this.",
                    "schema": {"type": "integer", "minimum": 0},
                },
            ],
            "responses": {"200": _json("A page.", "UserPage"), **BAD_QUERY, **UNAVAILABLE},
        },
    },
    "/users/{user_id}": {
        "parameters": [USER_ID],
        "get": {
            "summary": "Get a user",
            "operationId": "getUser",
            "tags": ["users"],
            "responses": {"200": _json("The user.", "User"), **NOT_FOUND, **UNAVAILABLE},
        },
        "patch": {
            "summary": "Change a user's username and/or email",
            "operationId": "updateUser",
            "tags": ["users"],
            "requestBody": _body("UserUpdate"),
            "responses": {
                "200": _json("The changed user.", "User"),
                **BODY_ERRORS,
                **NOT_FOUND,
                **CONFLICT,
                **UNAVAILABLE,
            },
        },
        "delete": {
            "summary": "Delete a user",
            "operationId": "deleteUser",
            "tags": ["users"],
            "responses": {"204": {"description": "Deleted."}, **NOT_FOUND, **UNAVAILABLE},
        },
    },
    "/tasks/divide": {
        "post": {
            "summary": "Queue divide(x, y); y = 0 is accepted and fails in the worker",
            "operationId": "queueDivide",
            "tags": ["tasks"],
            "requestBody": _body("DivideRequest"),
            "responses": {
                "202": _json("Queued.", "TaskQueued", headers=LOCATION),
                **BODY_ERRORS,
                **UNAVAILABLE,
            },
        },
    },
    "/tasks/": {
        "get": {
            "summary": "List the tasks this service queued, newest first",
            "operationId": "listTasks",
            "tags": ["tasks"],
            "parameters": [
                LIMIT,
                {
                    "name": "after",
                    "in": "query",
                    "description": "List tasks queued before the task with this id.",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {"200": _json("A page.", "TaskPage"), **BAD_QUERY, **UNAVAILABLE},
        },
    },
    "/tasks/{task_id}": {
        "parameters": [TASK_ID],
        "get": {
            "summary": "Get a task's state, result or error",
            "operationId": "getTask",
            "tags": ["tasks"],
            "parameters": [
                {
                    "name": "wait",
                    "in": "query",
                    "description": "Wait up to this many seconds for the task to finish "
                    "before answering (a long poll: no need to poll repeatedly).",
                    "schema": {"type": "number", "minimum": 0, "maximum": 10, "default": 0},
                }
            ],
            "responses": {
                "200": _json("The task.", "Task"),
                "404": _problem("This service never issued that id."),
                "422": _problem("`wait` is not a number of seconds from 0 to 10."),
                **UNAVAILABLE,
            },
        },
    },
    "/healthz": {
        "get": {
            "summary": "Liveness: the process serves",
            "operationId": "healthz",
            "tags": ["health"],
            "responses": {"200": _json("Alive.", "Status")},
        },
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: the database is migrated and the broker answers",
            "operationId": "readyz",
            "tags": ["health"],
            "responses": {
                "200": _json("Ready.", "Status"),
                "503": _problem("Not ready; `checks` names each failure and what to do."),
            },
        },
    },
}


def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Flask + Celery stack API",
            "version": "1.0.0",
            "description": "Users, and background tasks run by Celery workers. "
            "Every error is an RFC 9457 application/problem+json body.",
        },
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }
