"""The OpenAPI document is checked against the running code, not trusted."""

import re

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from harness.processes import Process
from project.docs.spec import openapi_document

EXAMPLES_PER_OPERATION = 30
# No 5xx, no undocumented status code, no response that breaks the document.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
NOT_API = {"static", "pages", "docs"}  # blueprints that serve people, not the JSON API

schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=EXAMPLES_PER_OPERATION,
)


def test_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_served_document_is_the_one_the_code_builds(app: Flask) -> None:
    assert app.test_client().get("/openapi.json").get_json() == openapi_document()


def test_every_api_route_is_documented(app: Flask) -> None:
    documented = {
        (path, method.upper())
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method != "parameters"
    }
    routed = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] not in NOT_API
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
def test_api_conforms_to_its_document(case, server: str, worker: Process) -> None:
    case.call_and_validate(base_url=server, checks=CHECKS)
