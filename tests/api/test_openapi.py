"""The OpenAPI document is checked against the running code, not trusted."""

import re

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    positive_data_acceptance,
)

from harness.processes import Process
from project import create_app
from tests.support import ProtectedServer, bearer

EXAMPLES_PER_OPERATION = 30
# gunicorn's limit_request_line (its default): longer request lines get its own 414.
GUNICORN_REQUEST_LINE_LIMIT = 4094
NOT_API = {"static", "pages", "docs"}  # blueprints that serve people, not the JSON API


def protected_app() -> Flask:
    """The app as production serves it: API_AUTH=required."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("API_AUTH", "required")
        return create_app("testing")


# The document the app generates with tokens required (the served one is checked below).
schema = schemathesis.openapi.from_dict(protected_app().spec)
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=EXAMPLES_PER_OPERATION,
    # The token is the test's to send (a valid one, below), not a field to fuzz.
    with_security_parameters=False,
)


def test_served_document_is_the_one_fuzzed(app: Flask) -> None:
    served = protected_app().test_client().get("/openapi.json").get_json()
    assert served == schema.raw_schema


def test_api_operations_declare_the_bearer_token_and_its_401() -> None:
    document = schema.raw_schema
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            public = path in ("/healthz", "/readyz")
            assert ("security" in operation) is not public, (method, path)
            assert ("401" in operation["responses"]) is not public, (method, path)


def test_without_api_auth_the_document_declares_no_token(app: Flask) -> None:
    document = app.test_client().get("/openapi.json").get_json()
    assert "securitySchemes" not in document["components"]


def test_document_is_valid_openapi_3_1(app: Flask) -> None:
    document = app.test_client().get("/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_error_is_documented_as_problem_json(app: Flask) -> None:
    document = app.test_client().get("/openapi.json").get_json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert list(response["content"]) == ["application/problem+json"], (
                        method,
                        path,
                        status,
                    )


def test_every_api_route_is_documented(app: Flask) -> None:
    document = app.test_client().get("/openapi.json").get_json()
    documented = {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    routed = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] not in NOT_API and rule.endpoint != "openapi.spec"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routed == documented


@schema.parametrize()
@settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    max_examples=EXAMPLES_PER_OPERATION,
)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_api_conforms_to_its_document(
    case, protected_server: ProtectedServer, worker: Process
) -> None:
    # Every check: no 5xx, documented statuses, headers and bodies, and valid requests
    # accepted / invalid ones refused (the schemas state each rule exactly), except:
    excluded = []
    if case.path == "/tasks/" and "after" in (case.query or {}):
        # the one rule no schema can state: `after` must name a task that exists;
        excluded.append(positive_data_acceptance)
    if "Idempotency-Key" in (case.headers or {}):
        # nor this one: a key already used with another body is refused (422), by design;
        excluded.append(positive_data_acceptance)
    if case.path == "/tasks/divide":
        # GET /tasks/divide is GET /tasks/{task_id} for the id "divide", so Allow lists GET.
        excluded.append(allow_header_conformance)
    # With a token; the `ignored_auth` check also sends each request without it (401).
    headers = bearer(protected_server.token)
    response = case.call(base_url=protected_server.url, headers=headers)
    if response.status_code == 414 and len(response.request.url) > GUNICORN_REQUEST_LINE_LIMIT:
        # gunicorn itself refuses a request line this long: the app never sees the request.
        return
    case.validate_response(response, headers=headers, excluded_checks=excluded)


def test_docs_page_points_at_the_document(app: Flask) -> None:
    response = app.test_client().get("/docs")
    assert response.status_code == 200
    assert 'data-spec-url="/openapi.json"' in response.get_data(as_text=True)
